"""Helpers shared by the benchmark scripts (run as `python bench/<script>.py`, so this folder is on sys.path)."""

from __future__ import annotations

import resource
import subprocess
import sys


def sync(device: str) -> None:
    """Wait for queued CUDA work, so a wall-clock stamp covers it."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def peak_rss_gib() -> float:
    """This process's peak resident set. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a
    child of a big parent would report at least the parent's size."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20  # kB -> GiB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # not Linux: best effort


def child_peak_rss(script: str, args: list[str]) -> float:
    """Peak RSS (GiB) of a fresh `python script *args` whose last stdout line is its own peak_rss_gib()."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])
