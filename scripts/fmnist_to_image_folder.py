"""Write Fashion-MNIST-LT as an image folder: <out>/{train,val,test}/<class>/<index>.png (grey PNGs).

The train and val images are exactly those `data=fmnist_lt` uses (its long-tailed subset and its balanced val split,
same n_max / imbalance factor / val_per_class), the test images the official 10,000; so `data=image_folder` on this
folder trains on the same data as `data=fmnist_lt` (docs/results.md, "Your own data").

python scripts/fmnist_to_image_folder.py data/fmnist_lt_folder [--data-dir DIR] [--imbalance-factor 100]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

CLASS_NAMES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")


def write_split(out: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> int:
    """Save images[indices] (uint8 (N, 1, 28, 28)) as <out>/<class name>/<index>.png; the index is the source's."""
    from PIL import Image

    for name in CLASS_NAMES:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i in indices:
        Image.fromarray(images[i, 0], mode="L").save(out / CLASS_NAMES[labels[i]] / f"{i:05d}.png")
    return len(indices)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (train/, val/, test/ inside)")
    parser.add_argument("--data-dir", default="data/fashion-mnist", help="the IDX files (else the system package)")
    parser.add_argument("--n-max", type=int, default=600)
    parser.add_argument("--imbalance-factor", type=float, default=100.0)
    parser.add_argument("--val-per-class", type=int, default=100)
    args = parser.parse_args(argv)
    # here, after parse_args, not at the top: `--help` answers without importing torch (18 s on a loaded machine)
    from ecl_lightning.cli import user_errors_as_messages

    with user_errors_as_messages():  # no dataset at --data-dir: its message and exit code 2
        convert(args)


def convert(args: argparse.Namespace) -> None:
    import numpy as np

    from ecl_lightning.data import FashionMNISTLTDataModule

    dm = FashionMNISTLTDataModule(
        args.data_dir, n_max=args.n_max, imbalance_factor=args.imbalance_factor, val_per_class=args.val_per_class
    )
    dm.check()
    files = dm._find_files()
    train_x, train_y, test_x, test_y = dm._load_arrays(files)
    dm.setup()
    n = {
        "train": write_split(args.out / "train", train_x, train_y, dm.train_indices),
        "val": write_split(args.out / "val", train_x, train_y, dm.val_indices),
        "test": write_split(args.out / "test", test_x, test_y, np.arange(len(test_y))),
    }
    print(f"{args.out}: " + ", ".join(f"{split} {count} images" for split, count in n.items()))


if __name__ == "__main__":
    main()
