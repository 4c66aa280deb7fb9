"""Test sets with shifted class priors (SADE's forward / uniform / backward long-tailed), drawn from a test split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ecl_lightning.config import ConfigError


def profile_names(ratios: Sequence[float]) -> list[str]:
    """forward<r> for r descending, uniform, backward<r> for r ascending (SADE's order, forward50 ... backward50)."""
    ratios = sorted({float(r) for r in ratios}, reverse=True)
    if any(r <= 1 for r in ratios):
        raise ConfigError(f"shifted.ratios must all be > 1 (uniform is always included), got {ratios}")
    fmt = [f"{r:g}" for r in ratios]
    return [f"forward{r}" for r in fmt] + ["uniform"] + [f"backward{r}" for r in reversed(fmt)]


def parse_profile(name: str) -> tuple[str, float]:
    """'forward50' -> ('forward', 50.0); 'uniform' -> ('uniform', 1.0)."""
    if name == "uniform":
        return "uniform", 1.0
    for direction in ("forward", "backward"):
        if name.startswith(direction):
            return direction, float(name.removeprefix(direction))
    raise ValueError(f"unknown test profile {name!r}")


def signed_imbalance(name: str) -> float:
    """Imbalance on one axis: forward r -> r, uniform -> 1, backward r -> 1/r (for plotting, log scale)."""
    direction, ratio = parse_profile(name)
    return 1 / ratio if direction == "backward" else ratio


def class_ranks(train_counts: Sequence[int]) -> np.ndarray:
    """Rank of each class by training count, most frequent first (ties: lower class id first)."""
    counts = np.asarray(train_counts)
    order = np.lexsort((np.arange(len(counts)), -counts))  # sort by -count, then id
    ranks = np.empty(len(counts), dtype=np.int64)
    ranks[order] = np.arange(len(counts))
    return ranks


def profile_counts(n_max: int, train_counts: Sequence[int], name: str) -> np.ndarray:
    """Test images per class: n_max * (1/r)^(rank / (C - 1)) rounded down, rank 0 = the most frequent training class.

    forward: the head classes keep n_max; backward: the order reversed (the tail classes keep n_max); uniform: n_max.
    SADE's `get_img_num_per_cls` with img_max = n_max and imb_factor = 1/r, class order from the training counts.
    """
    direction, ratio = parse_profile(name)
    ranks = class_ranks(train_counts)
    c = len(ranks)
    if direction == "backward":
        ranks = c - 1 - ranks
    if direction == "uniform" or c == 1:
        return np.full(c, int(n_max), dtype=np.int64)
    return np.floor(n_max * (1.0 / ratio) ** (ranks / (c - 1)) + 1e-9).astype(np.int64)


def check_profiles(test_targets: np.ndarray, train_counts: Sequence[int], names: Sequence[str], n_max: int) -> None:
    """Raise ConfigError (naming the profile, the class and the counts) if a split cannot supply a profile."""
    have = np.bincount(np.asarray(test_targets), minlength=len(train_counts))
    for name in names:
        need = profile_counts(n_max, train_counts, name)
        short = np.flatnonzero(need > have)
        if len(short):
            c = int(short[0])
            raise ConfigError(
                f"protocol=shifted: {name} needs {int(need[c])} test images of class {c} but the test split holds "
                f"{int(have[c])} ({len(short)} class(es) short); lower shifted.n_max (now {n_max})"
            )
        empty = np.flatnonzero(need == 0)
        if len(empty):
            c = int(empty[0])
            raise ConfigError(
                f"protocol=shifted: {name} gives class {c} 0 test images (n_max={n_max} images per class divided "
                f"by up to {parse_profile(name)[1]:g}); use smaller shifted.ratios or a test split with more "
                "images per class"
            )


def default_n_max(test_targets: np.ndarray, num_classes: int) -> int:
    """Images per class of the uniform profile: the smallest class of the test split (its size, if balanced)."""
    return int(np.bincount(np.asarray(test_targets), minlength=num_classes).min())


def profile_indices(test_targets: np.ndarray, counts: Sequence[int], seed: int) -> np.ndarray:
    """Indices into the test split: for each class c, the first counts[c] of its images in a seeded permutation.

    The permutation of a class depends only on (seed, c), so a profile's subset of a class contains every smaller
    one (forward50's images of a class are among forward25's).
    """
    targets = np.asarray(test_targets)
    chosen = []
    for c, n in enumerate(counts):
        members = np.flatnonzero(targets == c)
        perm = np.random.default_rng([int(seed), c]).permutation(len(members))
        chosen.append(members[np.sort(perm[: int(n)])])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def shifted_subsets(
    test_targets: np.ndarray, train_counts: Sequence[int], ratios: Sequence[float], seed: int, n_max: int | None
) -> dict[str, np.ndarray]:
    """{profile name: indices into the test split} for the 2 x len(ratios) + 1 profiles; checked before any work."""
    names = profile_names(ratios)
    if n_max is None:
        n_max = default_n_max(test_targets, len(train_counts))
    check_profiles(test_targets, train_counts, names, n_max)
    return {name: profile_indices(test_targets, profile_counts(n_max, train_counts, name), seed) for name in names}
