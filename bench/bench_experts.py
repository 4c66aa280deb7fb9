"""The K-expert network alone: experts one after another vs fused, NCHW vs channels_last, eager vs torch.compile.

    python bench/bench_experts.py --device cpu --batch 128 --repeats 5
    python bench/bench_experts.py --device cuda --precision bf16-mixed

One training step of the network (forward through the trunks and every head, a loss on all outputs, backward), K = 3
ResNet-32 experts with separate trunks (shared_stages 0, as in the CIFAR recipes) on random CIFAR-sized images. No
data loading, no losses beyond a stand-in, no optimiser: bench/bench_step.py times the whole ECL step. Every variant
starts from the same weights; after `--warmup` steps each (compiles happen there), single steps are timed round-robin
across the variants, `--repeats` times, and the median is reported, so a slow phase of a shared machine hits every
variant alike.

Peak memory: on CUDA, torch.cuda.max_memory_allocated during a variant's step minus what was allocated before it
(activations, gradients, workspaces). On CPU, the peak resident set of a fresh process that builds the variant and
runs warmup + 2 steps, minus that of one that only builds it (VmHWM): an RSS delta, coarse (allocator caching,
thread pools).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from contextlib import nullcontext

import _common
import torch
import torch.nn.functional as F
from _common import peak_rss_gib, sync

from ecl_lightning.models import MultiExpertNet

# name -> (fuse_experts, channels_last, compile)
VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "one_by_one": (False, False, False),
    "one_by_one_nhwc": (False, True, False),
    "fused": (True, False, False),
    "fused_nhwc": (True, True, False),
    "compile_nhwc": (False, True, True),
    "compile_fused_nhwc": (True, True, True),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--experts", type=int, default=3)
    p.add_argument("--backbone", default="resnet32")
    p.add_argument("--shared-stages", type=int, default=0)
    p.add_argument("--size", type=int, default=32, help="image side (CIFAR: 32)")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant (compiles happen here)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per variant; the figure is their median")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {list(VARIANTS)}")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-memory", action="store_true", help="CPU: skip the per-variant child processes for RSS")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


class Variant:
    """One way of running the same network: its copy of the weights, its layout, its (compiled) forward."""

    def __init__(self, args, net: MultiExpertNet, name: str):
        fuse, nhwc, compiled = VARIANTS[name]
        self.name, self.device = name, torch.device(args.device)
        self.net = copy.deepcopy(net).to(self.device)
        self.net.fuse_experts = fuse
        self.layout = torch.channels_last if nhwc else torch.contiguous_format
        self.net.to(memory_format=self.layout).train()
        if compiled:
            self.net.compile()
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if args.precision == "bf16-mixed" else nullcontext()
        )

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.layout)
        with self.autocast:
            out = self.net(x)
            k = out["logits"].shape[0]
            loss = F.cross_entropy(out["logits"].flatten(0, 1).float(), y.repeat(k))
            loss = loss + out["dist_logits"].float().logsumexp(-1).mean() + self.net.project(out["feats"]).sum()
        self.net.zero_grad(set_to_none=True)
        loss.backward()
        loss.item()


def build(args) -> tuple[MultiExpertNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = MultiExpertNet(args.backbone, args.classes, args.experts, args.shared_stages, in_chans=3)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, args.classes, (args.batch,)).to(args.device)
    return net, x, y


def child_peak_rss(args, name: str) -> float:
    """Peak resident memory (GiB) of a fresh process running `name` (or only building it, name "build")."""
    cmd = ["--memory-child", name, "--device", args.device, "--batch", str(args.batch)]
    cmd += ["--experts", str(args.experts), "--backbone", args.backbone, "--shared-stages", str(args.shared_stages)]
    cmd += ["--size", str(args.size), "--classes", str(args.classes), "--precision", args.precision]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    return _common.child_peak_rss(__file__, cmd)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    net, x, y = build(args)
    if args.memory_child:
        if args.memory_child != "build":
            variant = Variant(args, net, args.memory_child)
            for _ in range(args.warmup + 2):
                variant.step(x, y)
        print(peak_rss_gib())
        return

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    variants = [Variant(args, net, name) for name in names]
    if args.device == "cuda":
        x = x.pin_memory()
    warm_s = {}
    for v in variants:
        start = time.perf_counter()
        for _ in range(args.warmup):
            v.step(x, y)
        sync(args.device)
        warm_s[v.name] = time.perf_counter() - start

    times: dict[str, list[float]] = {v.name: [] for v in variants}
    peak: dict[str, float] = {}
    for _ in range(args.repeats):
        for v in variants:
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
            sync(args.device)
            start = time.perf_counter()
            v.step(x, y)
            sync(args.device)
            times[v.name].append(time.perf_counter() - start)
            if args.device == "cuda":
                peak[v.name] = max(peak.get(v.name, 0.0), (torch.cuda.max_memory_allocated() - before) / 2**30)
    if args.device == "cpu" and not args.no_memory:
        base = child_peak_rss(args, "build")
        peak = {name: child_peak_rss(args, name) - base for name in names}

    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"\nK={args.experts} {args.backbone} (shared_stages {args.shared_stages}), batch {args.batch}, "
        f"{args.size}x{args.size}, {args.precision}, {device}; forward+backward, median of {args.repeats} steps; "
        f"torch {torch.__version__}"
    )
    mem = "peak CUDA memory of the step (GiB)" if args.device == "cuda" else "peak RSS over a bare process (GiB)"
    ref = statistics.median(times[names[0]])
    print(f"| variant | step (ms) | images/s | vs {names[0]} | warm-up (s) | {mem} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        step = statistics.median(times[name])
        memory = f"{peak[name]:.2f}" if name in peak else "-"
        speed = f"{step * 1e3:.0f} | {args.batch / step:.0f} | {ref / step:.2f}x"
        print(f"| {name} | {speed} | {warm_s[name]:.1f} | {memory} |")


if __name__ == "__main__":
    main()
