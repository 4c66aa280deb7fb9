"""Input pipeline throughput: images/s of the training loader (two-view transforms) per dataset and worker count.

    python bench/bench_data.py                                  # fmnist_lt, cifar100_lt, imagenet_lt; 0 and 2 workers
    python bench/bench_data.py --datasets cifar100_lt --workers 2,4 --gpu-augment
    python bench/bench_data.py --datasets imagenet_lt --workers 0 --device cuda   # data.decode=bytes on the GPU

Fashion-MNIST-LT reads the real IDX files when found (data.data_dir, else Debian's dataset-fashion-mnist), else a
generated set in the same format; CIFAR-100-LT is generated in torchvision's pickle format at full size (500 images
per class before the long-tail cut), since no CIFAR copy can be downloaded here. Images are random but decoded and
transformed exactly as real ones. A figure is the median over `--repeats` passes of `--batches` batches, timed after
the first `--warmup` batches of each pass (worker start-up excluded).

`--gpu-augment` adds rows for `data.gpu_augment=true`: the loader yields uint8 images and the two views are built
batched on `--device` after transfer (the DataModule's on_after_batch_transfer); that time is included.

The split-file datasets (imagenet_lt, places_lt, inat2018) read `--jpegs` generated training JPEGs (photo-like 1/f
noise, `--jpeg-size` 500x375 at `--quality` 90, ~120 KB each as ILSVRC-2012's; 64 distinct photos in turn; half as
many per split for val and test) in the dataset's split-file layout, written once under `--jpeg-dir` and reused, in
batches of `--split-batch`. Rows: decoding alone in this process (PIL; torchvision.io.decode_jpeg on the CPU; on
CUDA, batched, with `--device cuda`); the training loader (both views) and the test loader (resize, centre crop) with
`data.decode=pil` (all work in the workers) and `data.decode=bytes` (workers read the files; this process decodes
and builds the views on `--device`, the DataModule's transfer_batch_to_device, timed). With 0 workers every figure is
the work of one process: images/s per worker process (per main process for the bytes path's decode and views).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from ecl_lightning.data.datasets.encoded import EncodedBatch, EncodedImageDataset
from ecl_lightning.data.datasets.image_files import load_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the real-format writers of the test suite
from datagen import write_cifar_dataset, write_idx_dataset, write_split_tree  # noqa: E402

FMNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLIT_FILE = ("imagenet_lt", "places_lt", "inat2018")
SPLIT_CLASSES = 8  # generated classes (balanced): throughput does not depend on the labels
SPLIT_DISTINCT = 64  # distinct photos, written in turn: a large tree is written in seconds, each file decodes alike


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="fmnist_lt,cifar100_lt,imagenet_lt")
    p.add_argument("--workers", default="0,2", help="comma list of num_workers values")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gpu-augment", action="store_true", help="also measure data.gpu_augment=true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where gpu_augment builds the views")
    p.add_argument("--n-max", type=int, default=None, help="data.n_max (default: the data config's)")
    p.add_argument("--jpegs", type=int, default=512, help="split-file datasets: generated training images")
    p.add_argument("--jpeg-size", default="500x375", help="WIDTHxHEIGHT of the generated JPEGs")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the generated images")
    p.add_argument("--jpeg-dir", type=Path, default=Path("/tmp/ecl_bench_splitfile"), help="where they are kept")
    p.add_argument("--split-batch", type=int, default=64, help="batch size of the split-file rows")
    return p.parse_args(argv)


def data_config(dataset: str, n_max: int | None):
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        return compose("train", overrides=[f"data={dataset}", *([f"data.n_max={n_max}"] if n_max else [])]).data


def data_dir(dataset: str, scratch: Path, n_max: int) -> Path:
    """The real Fashion-MNIST when on this machine, else files in the dataset's format with n_max images a class."""
    if dataset == "fmnist_lt":
        if any(FMNIST_SYSTEM_DIR.glob("train-images-idx3-ubyte*")):
            return FMNIST_SYSTEM_DIR
        return write_idx_dataset(scratch / dataset, n_train_per_class=n_max + 50, n_test_per_class=10)
    num_classes = 100 if dataset == "cifar100_lt" else 10
    return write_cifar_dataset(scratch / dataset, num_classes, n_train_per_class=n_max, n_test_per_class=10)


def build_datamodule(dataset: str, root: Path, workers: int, batch: int, gpu_augment: bool, n_max: int | None):
    cfg = data_config(dataset, n_max)
    dm = instantiate(
        cfg, data_dir=str(root), num_workers=workers, batch_size=batch, persistent_workers=False,
        pin_memory=False, gpu_augment=gpu_augment,
    )  # fmt: skip
    dm.check()
    dm.setup("fit")
    return dm


class _FakeTrainer:
    """The two attributes on_after_batch_transfer reads to know a batch is a training batch."""

    training = True
    world_size = 1


def one_pass(dm, args, device: torch.device, split: str = "train", warmup: int | None = None) -> float:
    """Images/s of one pass over `warmup + batches` batches of a loader (views built on `device` when gpu_augment;
    decoded and built on `device` for an EncodedBatch, data.decode=bytes)."""
    loader = getattr(dm, f"{split}_dataloader")()
    warmup = args.warmup if warmup is None else warmup
    total = min(warmup + args.batches, len(loader))  # a small long-tailed set may hold fewer batches
    if total <= warmup:
        raise SystemExit(f"{dm.name}: {len(loader)} batches, not more than --warmup {warmup}")
    loader, n = iter(loader), 0
    for i in range(total):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, n = time.perf_counter(), 0
        batch = next(loader)
        if isinstance(batch, EncodedBatch):
            batch = dm.transfer_batch_to_device(batch, device, 0)
        elif getattr(dm, "gpu_augment", False):
            batch = dm.on_after_batch_transfer([t.to(device) for t in batch], 0)
        n += batch[-1].shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


# ---- split-file datasets (ImageNet-LT, Places-LT, iNat 2018) ------------------------------------------------------
def split_tree(dataset: str, args) -> Path:
    """The generated JPEG tree of `dataset` for these arguments, written on first use (a `complete` marker)."""
    width, height = (int(v) for v in args.jpeg_size.split("x"))
    per_class = max(1, args.jpegs // SPLIT_CLASSES)
    name = f"{dataset}_{per_class * SPLIT_CLASSES}_{width}x{height}_q{args.quality}_d{SPLIT_DISTINCT}"
    root = args.jpeg_dir / name
    if not (root / "complete").is_file():
        print(f"writing {per_class * SPLIT_CLASSES} training JPEGs and their val/test images to {root}")
        write_split_tree(
            root, dataset, SPLIT_CLASSES, [per_class] * SPLIT_CLASSES, max(1, per_class // 2),
            size=(width, height), natural=True, quality=args.quality, distinct=SPLIT_DISTINCT,
        )  # fmt: skip
        (root / "complete").touch()
    return root


def build_split_datamodule(dataset: str, root: Path, workers: int, args, decode: str):
    dm = instantiate(
        data_config(dataset, None), split_dir=str(root / "splits"), image_root=str(root / "images"),
        num_classes=SPLIT_CLASSES, batch_size=args.split_batch, eval_batch_size=args.split_batch,
        num_workers=workers, persistent_workers=False, pin_memory=False, decode=decode,
    )  # fmt: skip
    dm.setup("fit")
    dm.trainer = _FakeTrainer()  # as inside Lightning's loops: with decode=bytes the test loader reads bytes too
    return dm


def decode_rates(root: Path, files: list[str], args, device: torch.device) -> list[tuple[str, float]]:
    """Images/s of a data.decode=bytes worker's work (read a file, pack a batch), and of decoding alone, in this
    process: PIL, torchvision.io on the CPU, and batched on CUDA."""
    paths = [str(root / "images" / f) for f in files]
    names, labels = np.array([f.encode() for f in files]), torch.zeros(len(files), dtype=torch.int64)
    encoded = EncodedImageDataset(root / "images", names, labels, train=True)

    def rate(decode) -> float:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            decode()
            times.append(time.perf_counter() - start)
        return len(paths) / statistics.median(times)

    rgb, ids = ImageReadMode.RGB, range(len(files))
    rows = [
        ("read only: a data.decode=bytes worker", rate(lambda: encoded.collate_fn([*map(encoded.__getitem__, ids)]))),
        ("decode only: PIL", rate(lambda: [load_image(p, 3) for p in paths])),
        ("decode only: torchvision.io (cpu)", rate(lambda: [decode_jpeg(read_file(p), mode=rgb) for p in paths])),
    ]
    if device.type == "cuda":
        data = [read_file(p) for p in paths]
        batches = [data[i : i + args.split_batch] for i in range(0, len(data), args.split_batch)]

        def on_cuda() -> None:
            for batch in batches:
                decode_jpeg(batch, mode=rgb, device=device)
            torch.cuda.synchronize()

        on_cuda()  # nvJPEG's first call initialises it
        what = f"decode only: torchvision.io (cuda, batches of {args.split_batch}, files in memory)"
        rows.append((what, rate(on_cuda)))
    return rows


def split_file_rows(dataset: str, args, device: torch.device) -> list[tuple]:
    root = split_tree(dataset, args)
    files = [line.split()[0] for line in next((root / "splits").glob("*train*.txt")).read_text().splitlines()]
    kb = sum((root / "images" / f).stat().st_size for f in files) / len(files) / 1024
    source = f"generated {args.jpeg_size} q{args.quality}, {kb:.0f} KB"
    rows = [(dataset, source, 0, what, r) for what, r in decode_rates(root, files, args, device)]
    pipelines = (
        ("pil", "train", "PIL decode + two views in the workers"),
        ("pil", "test", "PIL decode + eval crop in the workers"),
        ("bytes", "train", f"bytes: read in the workers, batched decode + two views on {device.type}"),
        ("bytes", "test", f"bytes: read in the workers, batched decode + eval crop on {device.type}"),
    )
    for decode, split, what in pipelines:
        for workers in (int(w) for w in args.workers.split(",")):
            dm = build_split_datamodule(dataset, root, workers, args, decode)
            warmup = min(args.warmup, len(getattr(dm, f"{split}_dataloader")()) // 2)
            rates = [one_pass(dm, args, device, split, warmup) for _ in range(args.repeats)]
            rows.append((dataset, source, workers, what, statistics.median(rates)))
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    rows = []
    split_rows = any(d in SPLIT_FILE for d in args.datasets.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            if dataset in SPLIT_FILE:
                rows += split_file_rows(dataset, args, device)
                continue
            root = data_dir(dataset, Path(tmp), data_config(dataset, args.n_max).n_max)
            for gpu_augment in (False, True) if args.gpu_augment else (False,):
                for workers in (int(w) for w in args.workers.split(",")):
                    dm = build_datamodule(dataset, root, workers, args.batch, gpu_augment, args.n_max)
                    if gpu_augment:
                        dm.trainer = _FakeTrainer()
                    rates = [one_pass(dm, args, device) for _ in range(args.repeats)]
                    where = f"views on {args.device}" if gpu_augment else "views in the workers"
                    source = "real" if str(root) == str(FMNIST_SYSTEM_DIR) else "generated"
                    rows.append((dataset, source, workers, where, statistics.median(rates)))
    batch = f"batch {args.batch}" + (f" (split-file datasets: {args.split_batch})" if split_rows else "")
    print(f"\n{batch}, median of {args.repeats} passes x {args.batches} batches, torch {torch.__version__}")
    print("| dataset | files | workers | augmentation | images/s |\n|---|---|---:|---|---:|")
    for dataset, source, workers, where, rate in rows:
        print(f"| {dataset} | {source} | {workers} | {where} | {rate:.0f} |")


if __name__ == "__main__":
    main()
