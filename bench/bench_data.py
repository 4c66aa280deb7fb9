"""Input pipeline throughput: images/s of the training loader (two-view transforms) per dataset and worker count.

    python bench/bench_data.py                                  # fmnist_lt and cifar100_lt, 0 and 2 workers
    python bench/bench_data.py --datasets cifar100_lt --workers 2,4 --gpu-augment

Fashion-MNIST-LT reads the real IDX files when found (data.data_dir, else Debian's dataset-fashion-mnist), else a
generated set in the same format; CIFAR-100-LT is generated in torchvision's pickle format at full size (500 images
per class before the long-tail cut), since no CIFAR copy can be downloaded here. Images are random but decoded and
transformed exactly as real ones. A figure is the median over `--repeats` passes of `--batches` batches, timed after
the first `--warmup` batches of each pass (worker start-up excluded).

`--gpu-augment` adds rows for `data.gpu_augment=true`: the loader yields uint8 images and the two views are built
batched on `--device` after transfer (the DataModule's on_after_batch_transfer); that time is included.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the real-format writers of the test suite
from datagen import write_cifar_dataset, write_idx_dataset  # noqa: E402

FMNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="fmnist_lt,cifar100_lt")
    p.add_argument("--workers", default="0,2", help="comma list of num_workers values")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gpu-augment", action="store_true", help="also measure data.gpu_augment=true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where gpu_augment builds the views")
    p.add_argument("--n-max", type=int, default=None, help="data.n_max (default: the data config's)")
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


def one_pass(dm, args, device: torch.device) -> float:
    """Images/s of one pass over `warmup + batches` training batches (views built on `device` when gpu_augment)."""
    loader = dm.train_dataloader()
    total = min(args.warmup + args.batches, len(loader))  # a small long-tailed set may hold fewer batches
    if total <= args.warmup:
        raise SystemExit(f"{dm.name}: {len(loader)} batches, not more than --warmup {args.warmup}")
    loader, n = iter(loader), 0
    for i in range(total):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, n = time.perf_counter(), 0
        batch = next(loader)
        if dm.gpu_augment:
            batch = dm.on_after_batch_transfer([t.to(device) for t in batch], 0)
        n += batch[-1].shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
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
    print(f"\nbatch {args.batch}, median of {args.repeats} passes x {args.batches} batches, torch {torch.__version__}")
    print("| dataset | files | workers | augmentation | images/s |\n|---|---|---:|---|---:|")
    for dataset, source, workers, where, rate in rows:
        print(f"| {dataset} | {source} | {workers} | {where} | {rate:.0f} |")


if __name__ == "__main__":
    main()
