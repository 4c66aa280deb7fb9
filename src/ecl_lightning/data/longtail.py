"""The long-tail profile and the subset selection, as pure numpy functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ecl_lightning.data.errors import DatasetFormatError


def longtail_counts(n_max: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """Images per class n_i = floor(n_max * IF^(-i/(C-1))), i = 0..C-1 (class 0 is the head)."""
    if n_max < 1 or num_classes < 1:
        raise ValueError(f"n_max and num_classes must be >= 1, got n_max={n_max}, num_classes={num_classes}")
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1 (n_max / n_min), got {imbalance_factor}")
    if num_classes == 1:
        return [int(n_max)]
    # Written as LDAM/NCL's code does (img_max * (1/IF)^(i/(C-1))) so the counts match theirs bit for bit:
    # CIFAR-10-LT IF100 -> 12,406 images, CIFAR-100-LT IF100 -> 10,847.
    counts = [int(n_max * (1.0 / imbalance_factor) ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    if counts[-1] < 1:
        raise ValueError(
            f"n_max={n_max} with imbalance_factor={imbalance_factor} leaves the tail class with 0 images; "
            "raise data.n_max or lower data.imbalance_factor"
        )
    return counts


def _per_class_positions(targets: np.ndarray, num_classes: int) -> list[np.ndarray]:
    order = np.argsort(targets, kind="stable")  # stable: file order kept within each class
    bounds = np.searchsorted(targets[order], np.arange(num_classes + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(num_classes)]


def select_longtail_indices(targets: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Indices (sorted, int64) of the first counts[c] images of each class c in file order."""
    targets = np.asarray(targets, dtype=np.int64)
    chosen = []
    for c, pos in enumerate(_per_class_positions(targets, len(counts))):
        if len(pos) < counts[c]:
            raise DatasetFormatError(
                f"class {c} has {len(pos)} training images but the long-tail profile asks for {counts[c]}; "
                "lower data.n_max or check the dataset files"
            )
        chosen.append(pos[: counts[c]])
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


def balanced_holdout_indices(targets: np.ndarray, exclude: np.ndarray, per_class: int) -> np.ndarray:
    """Sorted int64 indices of the first `per_class` images of each class (file order) not in `exclude`."""
    targets = np.asarray(targets, dtype=np.int64)
    num_classes = int(targets.max()) + 1 if len(targets) else 0
    free = np.ones(len(targets), dtype=bool)
    free[np.asarray(exclude, dtype=np.int64)] = False
    chosen = []
    for c, pos in enumerate(_per_class_positions(targets, num_classes)):
        pos = pos[free[pos]]
        if len(pos) < per_class:
            raise DatasetFormatError(
                f"class {c} has only {len(pos)} training images left outside the long-tail subset, "
                f"but the validation split asks for {per_class}; lower data.val_per_class or data.n_max"
            )
        chosen.append(pos[:per_class])
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)
