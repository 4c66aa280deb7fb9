"""selfsup@train_resampled's input: training images resampled per class to a test profile's counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecl_lightning.config import ConfigError
from ecl_lightning.posthoc.aggregate import fit_selfsup_weights
from ecl_lightning.posthoc.resample import resample_to_profile
from ecl_lightning.posthoc.shifted import profile_counts

TRAIN_COUNTS = [40, 20, 10, 5, 2]  # long-tailed, class 0 the head


def _train_targets() -> np.ndarray:
    targets = np.repeat(np.arange(len(TRAIN_COUNTS)), TRAIN_COUNTS)
    return np.random.default_rng(1).permutation(targets)  # classes interleaved, as in a real file


@pytest.mark.parametrize("profile", ["forward10", "uniform", "backward10"])
def test_resampling_gives_the_test_profiles_class_counts(profile):
    targets = _train_targets()
    counts = profile_counts(20, TRAIN_COUNTS, profile)  # backward10: 20 of class 4, which has 2 training images
    idx = resample_to_profile(targets, counts, seed=0, profile=profile)
    np.testing.assert_array_equal(np.bincount(targets[idx], minlength=5), counts)
    for c, need in enumerate(counts):  # a class short of images repeats its permutation: each image floor/ceil times
        uses = np.bincount(idx[targets[idx] == c], minlength=len(targets))[targets == c]
        assert uses.max() - uses.min() <= 1 and uses.sum() == need, (c, uses)
    np.testing.assert_array_equal(idx, resample_to_profile(targets, counts, seed=0))  # seeded
    assert not np.array_equal(idx, resample_to_profile(targets, counts, seed=1))


def test_a_test_class_without_training_images_is_refused():
    targets = np.array([0, 0, 1])
    with pytest.raises(ConfigError, match="test set backward2 holds class 2, which has no training image"):
        resample_to_profile(targets, [1, 1, 1], seed=0, profile="backward2")


def _views(targets: np.ndarray, gen: torch.Generator) -> torch.Tensor:
    """Logits [2 experts, N, C] of one view: expert 1 sees the head classes (0, 1) in every view and outputs
    view-independent noise on the others; expert 2 the reverse (the tail classes 2-4)."""
    y = torch.as_tensor(targets)
    signal = 4 * torch.nn.functional.one_hot(y, len(TRAIN_COUNTS)).float()
    head = (y < 2)[:, None]
    noise = 3 * torch.randn(2, len(y), len(TRAIN_COUNTS), generator=gen)
    return torch.stack([torch.where(head, signal, noise[0]), torch.where(head, noise[1], signal)])


def test_weights_fitted_on_resampled_training_images_favour_the_expert_that_suits_the_profile():
    """The same two experts and training images: resampled to a forward (head-heavy) profile the fitted weights
    favour the head expert, to a backward one the tail expert."""
    targets = _train_targets()
    weights = {}
    for profile in ("forward50", "backward50"):
        idx = resample_to_profile(targets, profile_counts(200, TRAIN_COUNTS, profile), seed=0, profile=profile)
        gen = torch.Generator().manual_seed(0)
        view1, view2 = _views(targets[idx], gen), _views(targets[idx], gen)
        weights[profile] = fit_selfsup_weights(view1, view2, epochs=5, lr=0.1, batch_size=32)
    assert weights["forward50"][0] > 0.6 and weights["backward50"][1] > 0.6, weights
