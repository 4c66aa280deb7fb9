"""Calibration: temperature scaling on held-out logits, Brier and classwise ECE against hand computations."""

from __future__ import annotations

import pytest
import torch

from ecl_lightning.posthoc.calibration import brier_score, classwise_ece, ece, fit_temperature, nll


def test_temperature_fitted_on_val_lowers_the_nll_of_held_out_logits():
    g = torch.Generator().manual_seed(0)
    n, c = 600, 5
    clean = 2 * torch.randn(n, c, generator=g)
    y = torch.multinomial(clean.softmax(-1), 1, generator=g).squeeze(1)  # softmax(clean) is calibrated
    logits = 4 * clean  # over-confident: the fitted temperature is near 4
    val, test = slice(0, 300), slice(300, n)
    t = fit_temperature(logits[val], y[val])
    assert 2.5 < t < 6
    assert nll(logits[test] / t, y[test]) < nll(logits[test], y[test]) - 0.1


def test_brier_and_classwise_ece_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    # (0.3^2 + 0.2^2 + 0.1^2 + 0.6^2 + 0.5^2 + 0.1^2) / 2
    assert brier_score(probs, y) == pytest.approx((0.09 + 0.04 + 0.01 + 0.36 + 0.25 + 0.01) / 2)
    # 2 bins, (0, 0.5], (0.5, 1]. Class 0: p 0.7 (bin 1, hit), 0.4 (bin 0, hit): |1-0.7| + |1-0.4| = 0.9.
    # Class 1: 0.2, 0.5 both bin 0, no hits: |0 - 0.7| = 0.7. Class 2: 0.1, 0.1 bin 0: 0.2. Sum 1.8 / (2 * 3).
    assert classwise_ece(probs, y, n_bins=2) == pytest.approx(1.8 / 6)
    # Top label: 0.7 hit (bin 1), 0.5 miss (bin 0): (0.3 + 0.5) / 2.
    assert ece(probs, y, n_bins=2) == pytest.approx(0.4)
