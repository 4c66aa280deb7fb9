"""Fashion-MNIST-LT: the four IDX files (datasets/idx.py reads them), a class-balanced val split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ecl_lightning.data.datamodules.in_memory import InMemoryDataModule
from ecl_lightning.data.datasets.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from ecl_lightning.data.errors import DatasetFormatError, DatasetNotFoundError
from ecl_lightning.data.input_spec import InputSpec
from ecl_lightning.data.transforms.recipes import FMNIST_MEAN, FMNIST_STD, fmnist_gpu_transforms, fmnist_transforms

# Where Debian's `dataset-fashion-mnist` package puts the files (`dpkg -L dataset-fashion-mnist`).
SYSTEM_DIRS: tuple[str, ...] = ("/usr/share/datasets/fashion-mnist",)

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC).astype(np.int64)
    if images.shape[1:] != (28, 28):
        raise DatasetFormatError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DatasetFormatError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if len(labels) and labels.max() >= 10:
        raise DatasetFormatError(f"{labels_path}: label {labels.max()} out of range 0..9")
    return images[:, None], labels  # (N, 1, 28, 28)


class FashionMNISTLTDataModule(InMemoryDataModule):
    """Fashion-MNIST-LT: counts n_max ... n_max/IF (600 ... 6 by default), val from unused train images."""

    name = "fmnist_lt"
    num_classes = 10
    in_chans = 1
    has_val = True
    default_n_max = 600

    def __init__(self, data_dir: str, val_per_class: int = 100, **options: Any) -> None:
        self.val_per_class = val_per_class
        super().__init__(data_dir, **options)

    def search_dirs(self) -> list[Path]:
        """Searched in order: data_dir, torchvision's layout inside it, the system package dirs."""
        return [self.data_dir, self.data_dir / "FashionMNIST" / "raw", *(Path(d) for d in SYSTEM_DIRS)]

    def _find_files(self) -> dict[str, Path]:
        for directory in self.search_dirs():
            found = {}
            for key, stem in IDX_FILES.items():
                path = next((p for p in (directory / f"{stem}.gz", directory / stem) if p.is_file()), None)
                if path is None:
                    break
                found[key] = path
            else:
                return found
        looked = "\n".join(f"  - {d}" for d in self.search_dirs())
        names = ", ".join(f"{stem}.gz" for stem in IDX_FILES.values())
        raise DatasetNotFoundError(
            f"Fashion-MNIST IDX files not found. Looked for {names} (or un-gzipped) in:\n{looked}\n"
            "Get them with one of:\n"
            "  - `apt-get install dataset-fashion-mnist` (Debian/Ubuntu package, read from its directory);\n"
            f"  - put the four IDX files in {self.data_dir};\n"
            "  - set data.download=true when online (torchvision download into data_dir)."
        )

    def _download(self) -> None:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(root=str(self.data_dir), train=True, download=True)

    def _load_arrays(self, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        train_x, train_y = _read_split(files["train_images"], files["train_labels"])
        test_x, test_y = _read_split(files["test_images"], files["test_labels"])
        return train_x, train_y, test_x, test_y

    def input_spec(self) -> InputSpec:
        """28x28 grey, normalised with the Fashion-MNIST statistics (what predict and export feed the model)."""
        return InputSpec(1, 28, 28, FMNIST_MEAN, FMNIST_STD)

    def transforms(self, augment: bool) -> tuple[nn.Module, nn.Module, nn.Module]:
        return fmnist_transforms(augment)

    def _gpu_transforms(self, augment: bool) -> nn.Module:
        return fmnist_gpu_transforms(augment)
