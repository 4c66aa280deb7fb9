"""The long-tail profile and the subset selection."""

import numpy as np
import pytest

from ecl_lightning.data import (
    DatasetFormatError,
    balanced_holdout_indices,
    longtail_counts,
    select_longtail_indices,
)


@pytest.mark.parametrize(
    ("n_max", "num_classes", "imbalance", "total"),
    [
        (500, 100, 100, 10847),  # CIFAR-100-LT IF100, the published size
        (5000, 10, 100, 12406),  # CIFAR-10-LT IF100
        (500, 100, 50, 12608),
        (500, 100, 10, 19573),
        (5000, 10, 50, 13996),
        (5000, 10, 10, 20431),
    ],
)
def test_published_dataset_sizes(n_max, num_classes, imbalance, total):
    counts = longtail_counts(n_max, num_classes, imbalance)
    assert sum(counts) == total
    assert counts[0] == n_max and counts[-1] == n_max // imbalance


def test_fmnist_default_profile_by_hand():
    # floor(600 * 100^(-i/9)): 100^(1/9) = 1.6681 -> 600, 359.7, 215.6, ...
    assert longtail_counts(600, 10, 100) == [600, 359, 215, 129, 77, 46, 27, 16, 10, 6]


def test_flat_profile_and_single_class():
    assert longtail_counts(7, 5, 1) == [7] * 5
    assert longtail_counts(7, 1, 100) == [7]


def test_bad_profile_rejected():
    with pytest.raises(ValueError, match="0 images"):
        longtail_counts(20, 10, 100)
    with pytest.raises(ValueError, match="imbalance_factor"):
        longtail_counts(20, 10, 0.5)


def test_selection_takes_first_images_in_file_order():
    targets = np.array([1, 0, 0, 2, 1, 0, 2, 1, 0, 2, 1])
    idx = select_longtail_indices(targets, [3, 2, 1])
    # class 0 at 1, 2, 5, 8 -> 1, 2, 5; class 1 at 0, 4, 7, 10 -> 0, 4; class 2 at 3, 6, 9 -> 3
    assert idx.tolist() == [0, 1, 2, 3, 4, 5]
    assert idx.dtype == np.int64


def test_selection_too_few_images_names_the_class():
    targets = np.array([0, 0, 0, 1])
    with pytest.raises(DatasetFormatError, match="class 1 has 1 training images.*asks for 2"):
        select_longtail_indices(targets, [2, 2])


def test_holdout_is_balanced_disjoint_and_in_file_order():
    targets = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    chosen = select_longtail_indices(targets, [2, 1])  # [0, 1, 2]
    val = balanced_holdout_indices(targets, chosen, per_class=2)
    assert val.tolist() == [3, 4, 5, 6]
    assert not set(val) & set(chosen)
    with pytest.raises(DatasetFormatError, match="class 0 has only 3"):
        balanced_holdout_indices(targets, chosen, per_class=4)
