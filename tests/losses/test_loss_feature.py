import math

import pytest
import torch

from ecl_lightning.losses import feature_distillation_loss


def test_two_experts_hand_example():
    feats = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])  # normalised: (.6, .8) and (1, 0)
    assert torch.allclose(feature_distillation_loss(feats), torch.tensor([0.8, 0.8]))  # .4^2 + .8^2
    assert torch.allclose(feature_distillation_loss(feats, distance="cosine"), torch.tensor([0.4, 0.4]))


def test_three_experts_others_mean_and_pairwise():
    feats = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 2.0]]])  # normalised: e1, e2, e2
    mse = feature_distillation_loss(feats, "mse", "others_mean")
    # k=0: target (0, 1) -> 2; k=1,2: target (.5, .5) -> .25 + .25
    assert torch.allclose(mse, torch.tensor([2.0, 0.5, 0.5]))
    cos = feature_distillation_loss(feats, "cosine", "others_mean")
    assert torch.allclose(cos, torch.tensor([1.0, 1 - 1 / math.sqrt(2), 1 - 1 / math.sqrt(2)]))
    pair = feature_distillation_loss(feats, "mse", "pairwise")
    assert torch.allclose(pair, torch.tensor([2.0, 1.0, 1.0]))  # k=1: (d(e2,e1) + d(e2,e2)) / 2 = (2 + 0) / 2
    assert torch.allclose(feature_distillation_loss(feats, "cosine", "pairwise"), torch.tensor([1.0, 0.5, 0.5]))


def test_batch_mean():
    feats = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]])  # sample 2 identical
    assert torch.allclose(feature_distillation_loss(feats), torch.tensor([0.4, 0.4]))


@pytest.mark.parametrize("target", ["others_mean", "pairwise"])
def test_target_is_stop_grad(target):
    feats = torch.randn(2, 4, 6, requires_grad=True)
    feature_distillation_loss(feats, target=target)[0].backward()
    assert feats.grad[0].abs().sum() > 0
    assert torch.equal(feats.grad[1], torch.zeros(4, 6))


def test_single_expert_and_bad_options():
    assert torch.equal(feature_distillation_loss(torch.randn(1, 3, 4)), torch.zeros(1))
    with pytest.raises(ValueError, match="mse.*cosine"):
        feature_distillation_loss(torch.randn(2, 3, 4), distance="l1")
    with pytest.raises(ValueError, match="others_mean.*pairwise"):
        feature_distillation_loss(torch.randn(2, 3, 4), target="all")
