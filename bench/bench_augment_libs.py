"""Batched two-view augmentation: images/s of data/transforms/gpu.py against Kornia's augmentation module.

    python bench/bench_augment_libs.py                       # fmnist, cifar and simclr224, batch 128
    OMP_NUM_THREADS=1 python bench/bench_augment_libs.py --threads 1 --repeats 15
    python bench/bench_augment_libs.py --per-op --repeats 5  # where the time goes: each op pair alone
    python bench/bench_augment_libs.py --smoke               # one tiny pass of each (tests/test_bench_augment_libs.py)
    python bench/bench_augment_libs.py --device cuda         # on a GPU (not yet run: no GPU lent so far)

Needs Kornia, which is not a package dependency: `pip install -e ".[bench]"` (kornia==0.9.0).

Pipelines (both views of a uint8 batch, as `data.gpu_augment=true` builds them after the transfer):
  fmnist     128 x 1 x 28 x 28: crop 28 pad 2, flip, normalise; view 2 adds random erasing.
  cifar      128 x 3 x 32 x 32: view 1 crop 32 pad 4, flip, AutoAugment CIFAR10, normalise, Cutout 16;
             view 2 SimCLR (RRC 32 scale 0.2-1, flip, jitter 0.4/0.4/0.4/0.1 p 0.8, grey 0.2, blur 3 p 0.5).
  simclr224  128 x 3 x 256 x 256 -> 224: both views SimCLR as imagefolder_transforms("simclr") (RRC scale
             0.08-1, blur 23), from images already resized to 256 x 256 (a batch needs one size).
The Kornia pipelines take the nearest Kornia op where Kornia differs (tests/data/test_kornia_equivalence.py records
which ops agree); they are plain nn.Sequential of Kornia ops (`--kornia-container augseq` for AugmentationSequential,
~25 % slower on fmnist's small images). Ours and Kornia's calls alternate, in swapped order every repeat, so a load
change on the machine hits both alike; a figure is the median over `--repeats` calls, after `--warmup` calls each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _common import sync
from torch import Tensor, nn

from ecl_lightning.data.transforms import CIFAR_MEAN, CIFAR_STD, FMNIST_MEAN, FMNIST_STD, IMAGENET_MEAN, IMAGENET_STD
from ecl_lightning.data.transforms import gpu as G
from ecl_lightning.data.transforms import recipes as R
from ecl_lightning.data.transforms.ops import gpu_pipeline

KORNIA_VERSION = "0.9.0"  # the version measured in docs/performance.md and pinned by the `bench` extra


def _kornia():
    try:
        import kornia.augmentation as K
    except ImportError:
        raise SystemExit(f'Kornia is not installed: pip install -e ".[bench]" (kornia=={KORNIA_VERSION})') from None
    return K


class KorniaTwoViews(nn.Module):
    """(view 1, view 2) of a uint8 batch through Kornia ops, which take float in [0, 1]."""

    def __init__(self, view1: nn.Module, view2: nn.Module) -> None:
        super().__init__()
        self.view1, self.view2 = view1, view2

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            x = images.float().div_(255)
            return self.view1(x), self.view2(x)


def _container(ops: list[nn.Module], container: str) -> nn.Module:
    return _kornia().AugmentationSequential(*ops) if container == "augseq" else nn.Sequential(*ops)


def _normalize(mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
    return _kornia().Normalize(torch.tensor(mean), torch.tensor(std))


def kornia_fmnist_views(container: str = "sequential") -> KorniaTwoViews:
    """fmnist_gpu_transforms with Kornia ops: crop pad 2 + flip; view 2 adds RandomErasing (value 0, normalised)."""
    K = _kornia()

    def geometric() -> list[nn.Module]:
        return [K.RandomCrop((28, 28), padding=2), K.RandomHorizontalFlip()]

    return KorniaTwoViews(
        _container([*geometric(), _normalize(FMNIST_MEAN, FMNIST_STD)], container),
        _container([*geometric(), _normalize(FMNIST_MEAN, FMNIST_STD), K.RandomErasing(value=0.0, p=0.5)], container),
    )


def kornia_simclr_view(
    size: int, scale: tuple[float, float], mean: tuple[float, ...], std: tuple[float, ...], container: str
) -> nn.Module:
    """The SimCLR view with Kornia ops. align_corners=False: torchvision's (and our) half-pixel resize grid."""
    K = _kornia()
    ops = [
        K.RandomResizedCrop((size, size), scale=scale, align_corners=False),
        K.RandomHorizontalFlip(),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur(R.simclr_blur_kernel(size), (0.1, 2.0), p=0.5),
        _normalize(mean, std),
    ]
    return _container(ops, container)


def kornia_cifar_views(container: str = "sequential") -> KorniaTwoViews:
    """cifar_gpu_transforms with Kornia ops. Kornia has no Cutout: a 16 x 16 RandomErasing square stands in (it
    is never clipped at the border, so it erases more than Cutout does)."""
    K = _kornia()
    from kornia.augmentation.auto import AutoAugment

    view1 = [
        K.RandomCrop((32, 32), padding=4),
        K.RandomHorizontalFlip(),
        AutoAugment("cifar10"),
        _normalize(CIFAR_MEAN, CIFAR_STD),
        K.RandomErasing(scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0, p=1.0),
    ]
    view2 = kornia_simclr_view(32, (0.2, 1.0), CIFAR_MEAN, CIFAR_STD, container)
    return KorniaTwoViews(_container(view1, container), view2)


def ours_simclr_views(size: int = 224) -> G.TwoViewAugment:
    """Both views the SimCLR view of imagefolder_transforms("simclr"), with data/transforms/gpu.py's ops on a batch."""
    declared = R.simclr_view(size, (0.08, 1.0), R.normalize(IMAGENET_MEAN, IMAGENET_STD))
    return G.TwoViewAugment(gpu_pipeline(declared), gpu_pipeline(declared))


def kornia_simclr_views(size: int = 224, container: str = "sequential") -> KorniaTwoViews:
    """ours_simclr_views with Kornia ops."""
    views = [kornia_simclr_view(size, (0.08, 1.0), IMAGENET_MEAN, IMAGENET_STD, container) for _ in range(2)]
    return KorniaTwoViews(*views)


def pipelines(args: argparse.Namespace) -> dict[str, tuple[tuple[int, int, int], nn.Module, nn.Module]]:
    """name -> (input C, H, W; ours; Kornia's)."""
    size = args.simclr_size
    table = {
        "fmnist": ((1, 28, 28), R.fmnist_gpu_transforms(), kornia_fmnist_views(args.kornia_container)),
        "cifar": ((3, 32, 32), R.cifar_gpu_transforms(), kornia_cifar_views(args.kornia_container)),
        "simclr224": (
            (3, size * 8 // 7, size * 8 // 7),  # 256 for 224: the resize before the crop
            ours_simclr_views(size),
            kornia_simclr_views(size, args.kornia_container),
        ),
    }
    unknown = set(args.pipelines) - set(table)
    if unknown:
        raise SystemExit(f"unknown pipeline(s) {sorted(unknown)}; choose from {sorted(table)}")
    return {name: table[name] for name in args.pipelines}


def op_pairs(size: int) -> list[tuple[str, nn.Module, nn.Module]]:
    """(name, ours, Kornia's) for the ops of the pipelines at `size` px: CIFAR's parameters at 32 px (with crop,
    AutoAugment and Cutout), the SimCLR view's at a larger size (RRC scale 0.08-1, blur 10 % of the side)."""
    K = _kornia()
    from kornia.augmentation.auto import AutoAugment

    k = R.simclr_blur_kernel(size)
    scale = (0.2, 1.0) if size == 32 else (0.08, 1.0)
    jitter, half_pixel = (0.4, 0.4, 0.4, 0.1), {"align_corners": False}
    pairs = [
        ("RandomResizedCrop", G.RandomResizedCrop(size, scale), K.RandomResizedCrop((size, size), scale, **half_pixel)),
        ("RandomHorizontalFlip", G.RandomHorizontalFlip(), K.RandomHorizontalFlip()),
        ("ColorJitter p 0.8", G.ColorJitter(*jitter, p=0.8), K.ColorJitter(*jitter, p=0.8)),
        ("RandomGrayscale", G.RandomGrayscale(0.2), K.RandomGrayscale(p=0.2)),
        (f"GaussianBlur {k} p 0.5", G.GaussianBlur(k, (0.1, 2.0), 0.5), K.RandomGaussianBlur(k, (0.1, 2.0), p=0.5)),
    ]  # fmt: skip
    if size != 32:
        return pairs
    return [
        ("RandomCrop pad 4", G.RandomCrop(32, 4), K.RandomCrop((32, 32), padding=4)),
        ("AutoAugment CIFAR10 (ours on uint8)", G.AutoAugment(), AutoAugment("cifar10")),
        ("Cutout 16 / RandomErasing 16 x 16", G.Cutout(16), K.RandomErasing((0.25, 0.25), (1.0, 1.0), p=1.0)),
        *pairs,
    ]


def per_op(args: argparse.Namespace) -> None:
    """ms per call of each op pair on a batch of `--batch` images of 32 px and of `--simclr-size` px."""
    where = f"{args.device}, {torch.get_num_threads()} thread(s)"
    print(f"\nbatch {args.batch}, ms per call, median of {args.repeats} interleaved calls, {where}")
    print("| op | input | ours ms | kornia ms | kornia / ours (time) |\n|---|---|---:|---:|---:|")
    for size in (32, args.simclr_size):
        side = size if size == 32 else size * 8 // 7  # RandomResizedCrop's input; the other ops get size x size
        images = torch.randint(0, 256, (args.batch, 3, side, side), dtype=torch.uint8, device=args.device)
        for name, ours, theirs in op_pairs(size):
            ours, theirs = ours.to(args.device), theirs.to(args.device)
            x = images if name == "RandomResizedCrop" else images[..., :size, :size].contiguous()
            xf = x.float() / 255
            t_ours, t_kornia = time_interleaved(
                [(ours, x if isinstance(ours, G.AutoAugment) else xf), (theirs, xf)], args.repeats, args.warmup
            )
            shape = "x".join(map(str, x.shape[1:]))
            print(f"| {name} | {shape} | {1e3 * t_ours:.1f} | {1e3 * t_kornia:.1f} | {t_kornia / t_ours:.2f} |")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipelines", default="fmnist,cifar,simclr224", type=lambda s: s.split(","))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=11, help="timed calls per library and pipeline (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--simclr-size", type=int, default=224, help="output side of the simclr224 pipeline")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--kornia-container", default="sequential", choices=["sequential", "augseq"])
    p.add_argument("--per-op", action="store_true", help="time each op pair alone instead of the pipelines")
    p.add_argument("--smoke", action="store_true", help="batch 4, one call each, simclr at 40 px: runs, no figures")
    args = p.parse_args(argv)
    if args.smoke:
        args.batch, args.repeats, args.warmup, args.simclr_size = 4, 1, 0, 40
    return args


def time_interleaved(calls: list[tuple[nn.Module, Tensor]], repeats: int, warmup: int) -> list[float]:
    """Median seconds of each (fn, input) call, calls alternating between them (order reversed every other round)."""
    times: list[list[float]] = [[] for _ in calls]
    with torch.no_grad():
        for r in range(warmup + repeats):
            for i in range(len(calls)) if r % 2 == 0 else reversed(range(len(calls))):
                fn, x = calls[i]
                sync(x.device.type)
                start = time.perf_counter()
                fn(x)
                sync(x.device.type)
                if r >= warmup:
                    times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv=None) -> list[tuple]:
    args = parse_args(argv)
    import kornia

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.per_op:
        per_op(args)
        return []
    rows = []
    for name, (shape, ours, theirs) in pipelines(args).items():
        x = torch.randint(0, 256, (args.batch, *shape), dtype=torch.uint8, device=args.device)
        ours, theirs = ours.to(args.device), theirs.to(args.device)
        t_ours, t_kornia = time_interleaved([(ours, x), (theirs, x)], args.repeats, args.warmup)
        rows.append((name, "x".join(map(str, shape)), args.batch / t_ours, args.batch / t_kornia))
    print(
        f"\nbatch {args.batch}, two views, median of {args.repeats} interleaved calls, torch {torch.__version__}, "
        f"kornia {kornia.__version__}, {args.device}, {torch.get_num_threads()} thread(s), {args.kornia_container}"
    )
    print("| pipeline | input | ours images/s | kornia images/s | kornia / ours |\n|---|---|---:|---:|---:|")
    for name, shape, ours, theirs in rows:
        print(f"| {name} | {shape} | {ours:.0f} | {theirs:.0f} | {theirs / ours:.2f} |")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
