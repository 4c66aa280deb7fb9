"""`model=ncl` against NCL's released objective (Bazinga699/NCL, lib/loss/loss.py, NIL_NBOD), term by term.

The reference below is written from the formulas of that file, not from our code: balanced logits a = z + log n_j
(raw class counts), hard category mining on the first expert's logits with the target always kept, the mined logits
a * mask, CE on both, and NBOD = sum_i mean_{j != i} KL(p_j || p_i) on both, every side with gradients.
"""

from __future__ import annotations

import math

import pytest
import torch

from ecl_lightning.module import ECLModule
from helpers import FixedLogits, model_cfg

K, B, C = 3, 16, 100
HCM_N = 30


def cifar100_lt_counts(n_max: int = 500, imbalance: float = 100.0) -> list[int]:
    return [int(n_max * (1 / imbalance) ** (i / (C - 1))) for i in range(C)]


def ncl_reference(z: torch.Tensor, y: torch.Tensor, counts: list[int], factor=0.6, factor_hcm=0.6) -> dict:
    """NIL_NBOD's terms in float64, one sample and one expert pair at a time."""
    z = z.double()
    a = z + torch.tensor(counts, dtype=torch.float64).log()
    mask = torch.zeros(B, C, dtype=torch.float64)
    for b in range(B):
        others = sorted((c for c in range(C) if c != y[b]), key=lambda c: -float(z[0, b, c].detach()))
        mask[b, [int(y[b]), *others[: HCM_N - 1]]] = 1.0
    h = a * mask

    def ce(x):
        return -torch.stack([x[b].log_softmax(-1)[y[b]] for b in range(B)]).mean()

    def nbod(x):
        p = x.softmax(-1)
        total = sum((p[j] * (p[j].log() - p[i].log())).sum(-1).mean() for i in range(K) for j in range(K) if i != j)
        return total / (K - 1)

    terms = {
        "label": sum(ce(a[k]) for k in range(K)),
        "hcm": sum(ce(h[k]) for k in range(K)),
        "kd": nbod(a),
        "kd_hcm": nbod(h),
    }
    terms["total"] = terms["label"] + terms["hcm"] + factor * terms["kd"] + factor_hcm * terms["kd_hcm"]
    return terms


def ncl_module(counts, *overrides: str) -> ECLModule:
    cfg = model_cfg("ncl", "model.loss.contrastive=none", *overrides)  # the MoCo branch is checked separately
    return ECLModule(num_classes=C, class_counts=counts, in_chans=1, **cfg)


@pytest.mark.parametrize("seed", range(3))
def test_ncl_objective_and_gradients_match_the_released_formulas(seed):
    torch.manual_seed(seed)
    counts = cifar100_lt_counts()
    z = (2 * torch.randn(K, B, C)).requires_grad_()
    y = torch.randint(0, C, (B,))
    module = ncl_module(counts)
    module.net = FixedLogits(z)
    loss, terms, _ = module.compute_loss(torch.zeros(B, 1, 8, 8), torch.zeros(B, 1, 8, 8), y, epoch=0.0)
    ref = ncl_reference(z, y, counts)
    for name in ("label", "hcm", "kd", "kd_hcm"):
        assert terms[name].item() == pytest.approx(ref[name].item(), rel=1e-5), name
    assert loss.item() == pytest.approx(ref["total"].item(), rel=1e-5)  # no ramp: full weight from step 0
    (grad,) = torch.autograd.grad(loss, z)
    (ref_grad,) = torch.autograd.grad(ref["total"], z)
    assert torch.allclose(grad, ref_grad.float(), rtol=1e-4, atol=1e-6)


def test_each_ncl_choice_matters_on_this_batch():
    """The old choices (normalised prior under the zero mask, mining on the mean, KL from the mean, no nested NBOD)
    each change the objective here, so the test above can tell them apart."""
    torch.manual_seed(0)
    counts = cifar100_lt_counts()
    z, y = 2 * torch.randn(K, B, C), torch.randint(0, C, (B,))
    ref = ncl_reference(z, y, counts)["total"].item()
    for override in ("model.loss.hcm_mining=mean", "model.loss.kd_target=ensemble", "model.loss.hcm_kd_weight=0"):
        module = ncl_module(counts, override)
        module.net = FixedLogits(z)
        loss, _, _ = module.compute_loss(torch.zeros(B, 1, 8, 8), torch.zeros(B, 1, 8, 8), y, epoch=0.0)
        assert abs(loss.item() - ref) > 1e-3 * ref, override


def test_zero_mask_uses_raw_counts_not_the_normalised_prior():
    """Closed form: 3 classes, counts (6, 3, 1), k = 2, target 2, mined {0, 2}. NCL: (z + log n) * mask."""
    from ecl_lightning.losses import hard_category_mining_loss

    counts = torch.tensor([6.0, 3.0, 1.0])
    z, y, mining = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([2]), torch.tensor([[3.0, 2.0, 1.0]])
    a0, a2 = 1.0 + math.log(6.0), 0.0 + math.log(1.0)
    expected = -a2 + math.log(math.exp(a0) + math.exp(0.0) + math.exp(a2))
    got = hard_category_mining_loss(z, y, counts.log(), mining, k=2, mask="zero")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    shifted = hard_category_mining_loss(z, y, (counts / counts.sum()).log(), mining, k=2, mask="zero")
    assert abs(shifted.item() - expected) > 0.1  # the -log N shift changes the zero-masked loss


def test_ecl_on_ncl_reweights_the_label_heads_and_distils_plainly_into_the_dist_heads():
    from ecl_lightning.losses import distillation_weights, kd_loss, normalize_weights, peer_teachers

    torch.manual_seed(1)
    counts = cifar100_lt_counts()
    cfg = model_cfg("ecl_ncl", "model.loss.contrastive=none", "model.loss.feat_weight=0")
    module = ECLModule(num_classes=C, class_counts=counts, in_chans=1, **cfg)
    assert module.net.dist_heads is not None
    z, s, y = torch.randn(K, B, C), torch.randn(K, B, C), torch.randint(0, C, (B,))
    module.net = FixedLogits(z, s)
    _, terms, stats = module.compute_loss(torch.zeros(B, 1, 8, 8), torch.zeros(B, 1, 8, 8), y, epoch=0.0)
    lp = module.log_prior
    teachers = peer_teachers(z, lp, detach=False)
    expected = 0.0
    for k in range(K):
        w = normalize_weights(distillation_weights(z[k], s[k], y, lp, "ratio"))
        expected += kd_loss(s[k], teachers[k], lp) + kd_loss(z[k], teachers[k], lp, weights=w)
    assert terms["kd"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert "kd_weight_mean" in stats
