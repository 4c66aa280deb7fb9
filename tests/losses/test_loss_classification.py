import math

import pytest
import torch

from ecl_lightning.losses import balanced_softmax_loss, hard_category_mining_loss

PRIOR = [0.5, 0.3, 0.2]
LOG_PRIOR = torch.log(torch.tensor(PRIOR))
Z = [1.0, 2.0, 0.0]


def test_balanced_softmax_matches_hand_computation():
    logits, target = torch.tensor([Z]), torch.tensor([1])
    # -log(pi_y e^{z_y} / sum_j pi_j e^{z_j})
    denom = sum(p * math.exp(z) for p, z in zip(PRIOR, Z, strict=True))
    expected = -math.log(0.3 * math.exp(2.0) / denom)
    assert balanced_softmax_loss(logits, target, LOG_PRIOR).item() == pytest.approx(expected, rel=1e-6)


def test_balanced_softmax_tau_zero_is_plain_ce_and_tau_scales_prior():
    logits, target = torch.tensor([Z]), torch.tensor([1])
    plain = -math.log(math.exp(2.0) / (math.exp(1.0) + math.exp(2.0) + 1.0))
    assert balanced_softmax_loss(logits, target, LOG_PRIOR, tau=0.0).item() == pytest.approx(plain, rel=1e-6)
    denom = sum(p**0.5 * math.exp(z) for p, z in zip(PRIOR, Z, strict=True))
    half = -math.log(0.3**0.5 * math.exp(2.0) / denom)
    assert balanced_softmax_loss(logits, target, LOG_PRIOR, tau=0.5).item() == pytest.approx(half, rel=1e-6)


def test_balanced_softmax_is_finite_and_float32_under_bf16():
    logits = torch.tensor([[300.0, -300.0, 0.0]], dtype=torch.bfloat16)
    loss = balanced_softmax_loss(logits, torch.tensor([1]), LOG_PRIOR)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_hcm_keeps_true_class_by_replacing_the_kth():
    logits = torch.tensor([Z], requires_grad=True)
    mining = torch.tensor([[3.0, 2.0, 1.0]], requires_grad=True)  # top-2 = {0, 1}, true class 2 replaces class 1
    loss = hard_category_mining_loss(logits, torch.tensor([2]), LOG_PRIOR, mining, k=2)
    expected = -math.log(0.2 * 1.0 / (0.5 * math.exp(1.0) + 0.2 * 1.0))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert mining.grad is None  # the mining logits are detached inside
    assert logits.grad[0, 1] == 0  # the excluded class gets no gradient under -inf masking


def test_hcm_true_class_already_in_topk_and_per_sample_selection():
    logits = torch.tensor([Z, Z])
    mining = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])  # top-2: {0, 1} and {2, 1}
    target = torch.tensor([0, 1])
    loss = hard_category_mining_loss(logits, target, LOG_PRIOR, mining, k=2)
    a = [math.log(p) + z for p, z in zip(PRIOR, Z, strict=True)]
    l0 = -a[0] + math.log(math.exp(a[0]) + math.exp(a[1]))
    l1 = -a[1] + math.log(math.exp(a[1]) + math.exp(a[2]))
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_hcm_zero_mask_reproduces_ncl_masking_to_zero():
    logits = torch.tensor([Z])
    mining = torch.tensor([[3.0, 2.0, 1.0]])  # kept {0, 2}; class 1's adjusted logit becomes 0
    loss = hard_category_mining_loss(logits, torch.tensor([2]), LOG_PRIOR, mining, k=2, mask="zero")
    a0, a2 = 1.0 + math.log(0.5), math.log(0.2)
    expected = -a2 + math.log(math.exp(a0) + 1.0 + math.exp(a2))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mask", ["neg_inf", "zero"])
def test_hcm_with_k_at_least_num_classes_is_balanced_softmax(mask):
    torch.manual_seed(0)
    logits, mining, target = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    expected = balanced_softmax_loss(logits, target, LOG_PRIOR, tau=0.7)
    for k in (3, 5):
        got = hard_category_mining_loss(logits, target, LOG_PRIOR, mining, k=k, tau=0.7, mask=mask)
        assert torch.allclose(got, expected)


def test_hcm_bad_options_raise():
    logits, target = torch.tensor([Z]), torch.tensor([0])
    with pytest.raises(ValueError, match="neg_inf.*zero"):
        hard_category_mining_loss(logits, target, LOG_PRIOR, logits, k=2, mask="ones")
    with pytest.raises(ValueError, match="k must be >= 1"):
        hard_category_mining_loss(logits, target, LOG_PRIOR, logits, k=0)
