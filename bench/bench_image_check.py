"""Cost of the split-file image checks before training: the default header check (`data.check_headers`) against the
full decode (`data.verify_images=true`), per 1,000 ImageNet-sized JPEGs (500x375, ~120 KB), page cache warm and cold.

    python bench/bench_image_check.py [--files 1000] [--dir /tmp/ecl_bench_jpegs]

"Cold" evicts each file from the page cache first (posix_fadvise DONTNEED): what a first run on a local disk sees.
A network file system adds its latency per file (two small reads each).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ecl_lightning.data.datasets.split_file import undecodable_files, unreadable_headers


def write_jpegs(root: Path, n: int, size: tuple[int, int] = (500, 375)) -> list[str]:
    """n photo-sized JPEGs (smooth gradients plus noise, quality 90), written once and reused."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.JPEG" for i in range(n)]
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    for i, name in enumerate(names):
        if (root / name).is_file():
            continue
        base = ((x * (i % 7 + 1) + y * (i % 5 + 1)) % 256).astype(np.uint8)
        noise = rng.integers(0, 40, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(np.stack([base, base[::-1], np.roll(base, i, 1)], -1) + noise).save(root / name, quality=90)
    return names


def evict(root: Path, names: list[str]) -> None:
    for name in names:
        fd = os.open(root / name, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty (just written) pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ecl_bench_jpegs"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,8")
    args = parser.parse_args(argv)
    names = write_jpegs(args.dir, args.files)
    kb = sum((args.dir / n).stat().st_size for n in names) / len(names) / 1024
    print(f"{len(names)} JPEGs of {kb:.0f} KB on average in {args.dir}\n")
    print("| check | workers | page cache | s per 1,000 files |")
    print("|---|---:|---|---:|")
    runs = [("header", unreadable_headers, int(w), cold) for cold in (False, True) for w in args.workers.split(",")]
    runs.append(("decode", undecodable_files, 1, False))
    for name, check, workers, cold in runs:
        times = []
        for _ in range(args.repeats):
            if cold:
                evict(args.dir, names)
            start = time.perf_counter()
            bad = check(args.dir, names, workers=workers)
            times.append(time.perf_counter() - start)
            assert not bad, bad[:3]
        per_1000 = min(times) * 1000 / len(names)
        print(f"| {name} | {workers} | {'cold' if cold else 'warm'} | {per_1000:.3f} |")


if __name__ == "__main__":
    main()
