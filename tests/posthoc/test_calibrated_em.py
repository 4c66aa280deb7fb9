"""Calibration before EM (correction=em_temperature | em_bcts): BCTS against its definition, EM against a reference
written from Saerens, Latinne & Decaestecker (2002), and the case that motivates it: under-confident posteriors make
EM misjudge a shifted prior, and a temperature fitted on a balanced val split repairs it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ecl_lightning.posthoc.calibration import fit_bcts, fit_temperature
from ecl_lightning.posthoc.prior import em_prior, prior_correction

C = 5


def sample(n: int, prior: torch.Tensor, seed: int, scale: float = 1.0):
    """Labels y ~ prior; x | y ~ N(mu_y, I) in 2-D. Returns (balanced Bayes logits of x scaled by `scale`, y):
    scale 1 gives calibrated balanced posteriors, scale < 1 under-confident ones."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(C, dtype=torch.float64) * 2 * torch.pi / C
    mu = 1.6 * torch.stack((angles.cos(), angles.sin()), 1)
    y = torch.multinomial(prior, n, replacement=True, generator=g)
    x = mu[y] + torch.randn(n, 2, generator=g, dtype=torch.float64)
    logits = -0.5 * ((x[:, None] - mu[None]) ** 2).sum(-1)  # log N(x; mu_c, I) + const: the balanced posterior
    return scale * logits, y


def reference_em(posteriors: torch.Tensor, steps: int = 1000) -> torch.Tensor:
    """Saerens et al. (2002), eqs. 2.9-2.10, with training priors uniform: p_s(c|x) = pi_s(c) p(c|x) / sum ..., then
    pi_{s+1}(c) = mean_x p_s(c|x); a fixed number of steps, no early stop."""
    pi = torch.full((posteriors.shape[1],), 1.0 / posteriors.shape[1], dtype=torch.float64)
    for _ in range(steps):
        weighted = posteriors * pi
        p = weighted / weighted.sum(1, keepdim=True)
        pi = p.mean(0)
    return pi


def test_em_matches_the_reference_em_on_synthetic_posteriors():
    prior = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03], dtype=torch.float64)
    z, _ = sample(4000, prior, seed=1)
    ours = em_prior(z.float(), max_iter=1000, tol=1e-12).double()
    assert torch.allclose(ours, reference_em(F.softmax(z, -1)), atol=1e-5)
    assert (ours - prior).abs().sum() < 0.08  # calibrated posteriors: EM finds the true prior


def test_bcts_recovers_a_known_temperature_and_biases():
    """Labels drawn from softmax(z / T0 + b0): the fitted (T, b) are T0 and b0 (up to the shift the softmax ignores)."""
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(40000, C, generator=g, dtype=torch.float64)
    t0, b0 = 2.0, torch.tensor([0.8, -0.3, 0.0, -0.9, 0.4], dtype=torch.float64)
    y = torch.multinomial(F.softmax(z / t0 + b0, -1), 1, generator=g).squeeze(1)
    t, b = fit_bcts(z.float(), y)
    assert t == pytest.approx(t0, rel=0.05)
    assert torch.allclose(b.double(), b0 - b0.mean(), atol=0.06)
    assert b.sum().abs() < 1e-9
    # no bias in the data: BCTS's temperature is temperature scaling's, its biases near 0
    y_t = torch.multinomial(F.softmax(z / t0, -1), 1, generator=g).squeeze(1)
    t_b, b_b = fit_bcts(z.float(), y_t)
    assert t_b == pytest.approx(fit_temperature(z.float(), y_t), rel=0.02) and b_b.abs().max() < 0.06


@pytest.mark.parametrize("fit", ["temperature", "bcts"])
def test_calibration_on_balanced_val_repairs_em_on_under_confident_posteriors(fit):
    backward = torch.tensor([0.03, 0.07, 0.15, 0.25, 0.5], dtype=torch.float64)
    uniform = torch.full((C,), 1.0 / C, dtype=torch.float64)
    val_z, val_y = sample(3000, uniform, seed=2, scale=0.4)  # under-confident: logits x 0.4
    test_z, test_y = sample(6000, backward, seed=3, scale=0.4)
    true_z, _ = sample(6000, backward, seed=3, scale=1.0)  # the same images, calibrated

    def em_accuracy(z):
        estimate = em_prior(z.float(), max_iter=1000)
        acc = (prior_correction(z.float(), estimate).argmax(1) == test_y).double().mean()
        return float((estimate.double() - backward).abs().sum()), float(acc)

    raw_l1, raw_acc = em_accuracy(test_z)
    if fit == "temperature":
        calibrated = test_z / fit_temperature(val_z.float(), val_y)
    else:
        t, b = fit_bcts(val_z.float(), val_y)
        calibrated = test_z / t + b.double()
    cal_l1, cal_acc = em_accuracy(calibrated)
    _, bayes_acc = em_accuracy(true_z)
    assert cal_l1 < raw_l1 / 2, (raw_l1, cal_l1)
    assert cal_acc > raw_acc and cal_acc == pytest.approx(bayes_acc, abs=0.01), (raw_acc, cal_acc, bayes_acc)


def test_calibrated_em_without_a_val_split_is_refused_and_left_out_of_the_defaults():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from ecl_lightning.config import ConfigError
    from ecl_lightning.posthoc.shifted_eval import check_options

    model = SimpleNamespace(net=SimpleNamespace(dist_heads=None), num_experts=3)
    no_val = SimpleNamespace(val_set=None, name="cifar100_lt")
    cfg = OmegaConf.create(
        {"protocol": "shifted", "heads": "label", "correction": None, "calibration": False, "selfsup": {"epochs": 1}}
    )
    assert check_options(cfg, model, no_val).corrections == ["none", "known", "em"]
    with_val = SimpleNamespace(val_set=[0], name="fmnist_lt")
    assert check_options(cfg, model, with_val).corrections[-2:] == ["em_temperature", "em_bcts"]
    cfg.correction = ["none", "em_bcts"]
    with pytest.raises(ConfigError, match="correction=em_bcts calibrates the logits on the val split"):
        check_options(cfg, model, no_val)
