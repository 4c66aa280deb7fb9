"""Test-time aggregation of experts: the fixed rules and SADE's self-supervised weights."""

from __future__ import annotations

import math

import pytest
import torch

from ecl_lightning.posthoc.aggregate import aggregate, fit_selfsup_weights


def test_fixed_rules_on_two_experts():
    z = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])  # K=2, N=1, C=2
    assert torch.allclose(aggregate(z, "mean_logits"), torch.tensor([[1.0, 0.0]]))
    p1 = torch.tensor([math.e**2, 1]) / (math.e**2 + 1)
    mean_p = (p1 + torch.tensor([0.5, 0.5])) / 2
    assert torch.allclose(aggregate(z, "mean_probs").softmax(-1)[0], mean_p, atol=1e-6)
    prod = p1 * 0.5
    assert torch.allclose(aggregate(z, "product").softmax(-1)[0], prod / prod.sum(), atol=1e-6)
    w = torch.tensor([0.25, 0.75])
    assert torch.allclose(aggregate(z, "selfsup", w), torch.tensor([[0.5, 0.0]]))
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(z, "vote")


def test_selfsup_weights_favour_the_expert_consistent_across_views():
    g = torch.Generator().manual_seed(0)
    n, c = 512, 10
    signal = 4 * torch.nn.functional.one_hot(torch.randint(0, c, (n,), generator=g), c).float()
    # Expert 1 sees the same class in both views; experts 2 and 3 output view-independent noise.
    view1 = torch.stack([signal + 0.1 * torch.randn(n, c, generator=g), *(3 * torch.randn(2, n, c, generator=g))])
    view2 = torch.stack([signal + 0.1 * torch.randn(n, c, generator=g), *(3 * torch.randn(2, n, c, generator=g))])
    w = fit_selfsup_weights(view1, view2, epochs=5, lr=0.1, batch_size=64)
    assert w.sum() == pytest.approx(1.0, abs=1e-6)
    assert int(w.argmax()) == 0 and w[0] > 0.5, w
