"""Training images resampled per class to a test profile's counts: the inductive input of `selfsup` (method.md 5.3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ecl_lightning.config import ConfigError


def resample_to_profile(train_targets: np.ndarray, counts: Sequence[int], seed: int, profile: str = "") -> np.ndarray:
    """Indices into the training split holding `counts[c]` images of class c (the test profile's own counts, so
    its class proportions and its size): a permutation of class c's training images seeded by (`seed`, c), repeated
    as often as needed (each image then appears floor or ceil of counts[c] / n_c times), first counts[c] of it."""
    train_targets = np.asarray(train_targets)
    picked = []
    for c, need in enumerate(int(n) for n in counts):
        if need == 0:
            continue
        pool = np.flatnonzero(train_targets == c)
        if len(pool) == 0:
            raise ConfigError(
                f"selfsup.tuning_data=train_resampled: test set {profile or '?'} holds class {c}, which has no "
                "training image to resample; use selfsup.tuning_data=test"
            )
        perm = pool[np.random.default_rng([seed, c]).permutation(len(pool))]
        picked.append(np.resize(perm, need))  # np.resize repeats the permutation cyclically
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
