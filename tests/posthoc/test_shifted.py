"""Shifted test priors: class counts per profile, seeded nested subsets, the up-front error."""

from __future__ import annotations

import numpy as np
import pytest

from ecl_lightning.config import ConfigError
from ecl_lightning.posthoc.shifted import profile_counts, profile_indices, profile_names, shifted_subsets


def test_profile_names_are_sades_eleven():
    assert profile_names([2, 50, 25, 10, 5]) == [
        "forward50", "forward25", "forward10", "forward5", "forward2", "uniform",
        "backward2", "backward5", "backward10", "backward25", "backward50",
    ]  # fmt: skip


def test_counts_follow_the_training_order_and_the_ratio():
    # Classes by training count: 2 (most), 0, 3, 1 (least): ranks 1, 3, 0, 2.
    train = [50, 5, 90, 20]
    # SADE, CIFAR-100 test (100 per class), ratio 50: int(100 * 0.02 ** (rank / 3)) = 100, 27, 7, 2.
    assert profile_counts(100, train, "forward50").tolist() == [27, 2, 100, 7]
    assert profile_counts(100, train, "backward50").tolist() == [7, 100, 2, 27]
    assert profile_counts(100, train, "uniform").tolist() == [100] * 4
    assert profile_counts(100, train, "forward2").tolist() == [79, 50, 100, 62]


def test_subsets_have_the_profile_counts_are_seeded_and_nested():
    rng = np.random.default_rng(0)
    targets = rng.permutation(np.repeat(np.arange(4), 10))
    train = [40, 20, 10, 5]
    subsets = shifted_subsets(targets, train, [5, 2], seed=3, n_max=None)
    assert list(subsets) == ["forward5", "forward2", "uniform", "backward2", "backward5"]
    for name, idx in subsets.items():
        counts = np.bincount(targets[idx], minlength=4)
        assert counts.tolist() == profile_counts(10, train, name).tolist(), name
        assert len(np.unique(idx)) == len(idx)
    assert np.bincount(targets[subsets["forward5"]]).tolist() == [10, 5, 3, 2]  # int(10 * 0.2 ** (rank / 3))
    again = shifted_subsets(targets, train, [5, 2], seed=3, n_max=None)
    assert all(np.array_equal(again[n], subsets[n]) for n in subsets)
    other = shifted_subsets(targets, train, [5, 2], seed=4, n_max=None)
    assert not np.array_equal(other["forward5"], subsets["forward5"])
    assert set(subsets["forward5"]) <= set(subsets["forward2"])  # per class, a prefix of one permutation
    assert np.array_equal(profile_indices(targets, [10] * 4, 3), np.arange(40))


def test_a_split_that_cannot_supply_a_profile_is_named():
    targets = np.repeat(np.arange(3), [10, 10, 4])  # class 2 holds 4 test images
    with pytest.raises(ConfigError, match="class 2 but the test split holds 4"):
        shifted_subsets(targets, [30, 20, 10], [2], seed=0, n_max=10)
    with pytest.raises(ConfigError, match="forward50 gives class 1 0 test images"):
        shifted_subsets(targets, [30, 20, 10], [50], seed=0, n_max=None)
