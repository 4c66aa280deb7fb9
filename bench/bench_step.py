"""Training-step throughput of ECL: the Lightning Trainer against a bare PyTorch loop, and the execution options.

    python bench/bench_step.py                                   # cifar100_lt recipe model, batch 128, CPU
    python bench/bench_step.py --device cuda --precision bf16-mixed --variants lightning,bare,bare_fused
    python bench/bench_step.py --experiment fmnist_lt --variants bare,bare_nchw

Every variant is the model of the experiment's config (K experts, all its losses) trained on the same in-memory
batches of random images (labels drawn from the long-tailed class counts), so the input pipeline is not measured here
(bench/bench_data.py measures it). A step is timed from the end of one optimiser step to the end of the next: data
fetch from the loader, forward, all losses, backward, optimiser and scheduler step, and, under Lightning, its hooks
and logging. Variants run interleaved in one process (A-vs-B from the same run); each figure is the median over
`--repeats` runs of each run's median step time after `--warmup` steps.

Peak memory: on CUDA, torch.cuda.max_memory_allocated per variant in this process; on CPU, the peak resident set of
a fresh process that runs the variant alone (`--memory-child`, VmHWM), since the RSS high-water mark of a shared
process cannot be split between variants.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import nullcontext
from functools import partial

import _common
import lightning as L
import torch
from _common import peak_rss_gib, sync
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from ecl_lightning.data.longtail import longtail_counts
from ecl_lightning.optim import build_optimizer, lr_factor, scaled_lr

# name -> (runner, model overrides). "bare_nchw" is the plain NCL-style loop: experts one after another, NCHW, eager.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "lightning": ("lightning", []),
    "bare": ("bare", []),
    "bare_nchw": ("bare", ["model.channels_last=false", "model.net.fuse_experts=false", "model.compile=false"]),
    "bare_fused": ("bare", ["model.net.fuse_experts=true"]),
    "bare_fused_nchw": ("bare", ["model.net.fuse_experts=true", "model.channels_last=false"]),
    "bare_compile": ("bare", ["model.compile=true"]),
    "lightning_compile": ("lightning", ["model.compile=true"]),
}
SHAPES = {
    "fmnist_lt": (1, 28, 28, 10),
    "cifar10_lt": (3, 32, 32, 10),
    "cifar100_lt": (3, 32, 32, 100),
    "imagenet_lt": (3, 224, 224, 1000),  # the GPU rate the input pipeline must feed (docs/performance.md)
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default="cifar100_lt", choices=sorted(SHAPES))
    p.add_argument("--variants", default="lightning,bare,bare_nchw,bare_fused", help=f"comma list of {list(VARIANTS)}")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3, help="steps not timed at the start of each run")
    p.add_argument("--steps", type=int, default=8, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant; the figure is the median")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override for every variant")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_module(args, overrides: list[str]):
    c, h, w, num_classes = SHAPES[args.experiment]
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={args.experiment}", *args.override, *overrides])
    counts = longtail_counts(cfg.data.get("n_max", 500), num_classes, cfg.data.get("imbalance_factor", 100))
    module = instantiate(cfg.model, num_classes=num_classes, in_chans=c, class_counts=counts)
    queue = cfg.model.loss.queue_size
    if module.use_contrastive and queue % args.batch:
        raise SystemExit(f"model.loss.queue_size={queue} must be a multiple of --batch {args.batch}")
    return module, counts, (c, h, w)


def make_loader(args, counts, shape, n_batches: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    n = n_batches * args.batch
    prior = torch.tensor(counts, dtype=torch.float)
    y = torch.multinomial(prior / prior.sum(), n, replacement=True, generator=g)
    x1, x2 = torch.randn(n, *shape, generator=g), torch.randn(n, *shape, generator=g)
    return DataLoader(TensorDataset(x1, x2, y), batch_size=args.batch, shuffle=False, drop_last=True)


class StepTimer(L.Callback):
    """Wall-clock time at the end of every training batch."""

    def __init__(self, device: str):
        self.device, self.stamps = device, []

    def on_train_batch_end(self, *args, **kwargs) -> None:
        sync(self.device)
        self.stamps.append(time.perf_counter())


def run_lightning(args, module, loader) -> list[float]:
    timer = StepTimer(args.device)
    trainer = L.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=args.precision,
        max_steps=len(loader),
        max_epochs=1,
        logger=L.pytorch.loggers.CSVLogger(os.environ.get("TMPDIR", "/tmp"), name="ecl_bench"),
        log_every_n_steps=10,  # as conf/trainer/default.yaml: logging is part of the real step
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=loader)
    return [b - a for a, b in zip(timer.stamps, timer.stamps[1:], strict=False)]


def run_bare(args, module, loader) -> list[float]:
    """What Lightning's automatic optimisation does for one optimiser, written out."""
    device = torch.device(args.device)
    module.to(device).train()
    lr = scaled_lr(module.optim_cfg, args.batch)
    optimizer = build_optimizer(module.net.parameters(), module.optim_cfg, lr)
    total = len(loader)
    schedule = partial(lr_factor, steps_per_epoch=total, total_steps=total, cfg=module.schedule_cfg, base_lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    autocast = partial(torch.autocast, device_type=device.type, dtype=dtype) if dtype else nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "16-mixed")
    stamps = []
    for step, (x1, x2, y) in enumerate(loader):
        x1, x2, y = x1.to(device, non_blocking=True), x2.to(device, non_blocking=True), y.to(device)
        with autocast():
            loss, _, _ = module.compute_loss(x1, x2, y, epoch=step / total)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss.item()  # Lightning reads the loss back every step too (progress/logging)
        sync(args.device)
        stamps.append(time.perf_counter())
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def measure(args, name: str) -> list[float]:
    runner, overrides = VARIANTS[name]
    torch.manual_seed(0)
    module, counts, shape = build_module(args, overrides)
    loader = make_loader(args, counts, shape, args.warmup + args.steps + 1)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = (run_lightning if runner == "lightning" else run_bare)(args, module, loader)
    return times[args.warmup :]


def child_peak_rss(args, name: str) -> float:
    """Peak resident memory (GiB) of a fresh process training `name` for warmup + 2 steps."""
    cmd = [
        "--memory-child",
        name,
        "--experiment",
        args.experiment,
        "--batch",
        str(args.batch),
        "--device",
        args.device,
        "--precision",
        args.precision,
        "--warmup",
        "1",
        "--steps",
        "2",
    ]
    cmd += [f"--override={o}" for o in args.override]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    return _common.child_peak_rss(__file__, cmd)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        measure(args, args.memory_child)
        print(peak_rss_gib())
        return
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")

    medians: dict[str, list[float]] = {n: [] for n in names}
    peak: dict[str, float] = {}
    for _ in range(args.repeats):
        for name in names:  # interleaved, so a slow phase of the machine hits every variant alike
            medians[name].append(statistics.median(measure(args, name)))
            if args.device == "cuda":
                peak[name] = max(peak.get(name, 0.0), torch.cuda.max_memory_allocated() / 2**30)
    if args.device == "cpu":
        peak = {name: child_peak_rss(args, name) for name in names}

    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{args.experiment}, batch {args.batch}, {args.precision}, {device}; median of {args.repeats} runs "
          f"x {args.steps} steps; torch {torch.__version__}")  # fmt: skip
    mem = "peak CUDA memory (GiB)" if args.device == "cuda" else "peak RSS, own process (GiB)"
    base = names[0]
    print(f"| variant | step (ms) | images/s | vs {base} | {mem} |\n|---|---:|---:|---:|---:|")
    ref = statistics.median(medians[base])
    for name in names:
        step = statistics.median(medians[name])
        print(f"| {name} | {step * 1e3:.0f} | {args.batch / step:.0f} | {ref / step:.2f}x | {peak[name]:.2f} |")


if __name__ == "__main__":
    main()
