import math

import pytest
import torch

from ecl_lightning.losses import moco_loss, supcon_loss


def test_moco_hand_example_normalises_inputs():
    q = torch.tensor([[2.0, 0.0]], requires_grad=True)
    k = torch.tensor([[5.0, 0.0]], requires_grad=True)
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    loss = moco_loss(q, k, queue, temperature=0.5)  # logits (1, 0, -1) / 0.5
    assert loss.item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2))), rel=1e-6)
    loss.backward()
    assert q.grad is not None and k.grad is None  # the key is detached


def test_supcon_hand_example_with_empty_slot_excluded():
    q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])
    queue_target = torch.tensor([1, 0, -1])  # last slot empty: neither positive nor negative
    loss = supcon_loss(q, k, queue, torch.tensor([0]), queue_target, temperature=1.0)
    # valid logits (1, 0, -1); positives: own key (1) and slot 1 (-1); mean of -(l - lse) = lse
    lse = math.log(math.e + 1 + math.exp(-1))
    assert loss.item() == pytest.approx(-((1 - lse) + (-1 - lse)) / 2, rel=1e-6)
    assert loss.item() == pytest.approx(lse, rel=1e-6)


def test_supcon_without_label_matches_equals_moco_and_is_finite():
    torch.manual_seed(0)
    q, k = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8)
    queue = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    queue_target = torch.tensor([5, 5, 6, 6, 7, 7])
    target = torch.tensor([0, 1, 2, 3])
    loss = supcon_loss(q, k, queue, target, queue_target)
    assert torch.allclose(loss, moco_loss(q, k, queue))
    all_empty = supcon_loss(q, k, queue, target, torch.full((6,), -1))
    assert all_empty.item() == pytest.approx(0.0, abs=1e-6)  # only the own key remains
    loss.backward()
    assert torch.isfinite(q.grad).all()
