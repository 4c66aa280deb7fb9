"""Calibration: temperature scaling fitted on held-out (val) logits, Brier score, top-label and classwise ECE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def fit_temperature(logits: Tensor, targets: Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of softmax(z / T) on (val) logits [N, C] (Guo et al. 2017; LBFGS on
    log T, so T stays positive)."""
    z, y = logits.detach().double(), targets.long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def fit_bcts(logits: Tensor, targets: Tensor, max_iter: int = 200) -> tuple[float, Tensor]:
    """Bias-corrected temperature scaling (Alexandari et al., ICML 2020): T > 0 and per-class biases b [C]
    minimising the NLL of softmax(z / T + b) on (val) logits [N, C]; LBFGS on (log T, b), b starting at 0."""
    z, y = logits.detach().double(), targets.long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(z.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, bias], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp() + bias, y)
        loss.backward()
        return loss

    opt.step(closure)
    bias = bias.detach()
    return float(log_t.detach().exp()), bias - bias.mean()  # the softmax ignores a common shift


def nll(logits: Tensor, targets: Tensor) -> float:
    return float(F.cross_entropy(logits.double(), targets.long()))


def brier_score(probs: Tensor, targets: Tensor) -> float:
    """Mean over samples of sum_c (p_c - 1[y = c])^2 (Brier 1950, multi-class; in [0, 2])."""
    onehot = F.one_hot(targets.long(), probs.shape[-1]).to(probs)
    return float(((probs - onehot) ** 2).sum(-1).mean())


def _bin_gap(conf: Tensor, hit: Tensor, n_bins: int) -> Tensor:
    """sum_b |sum_{i in b} (hit_i - conf_i)| with bins (j/B, (j+1)/B] (the ECE numerator)."""
    bins = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    gap = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, (hit - conf).double())
    return gap.abs().sum()


def ece(probs: Tensor, targets: Tensor, n_bins: int = 15) -> float:
    """Top-label expected calibration error (equal-width bins, as LongTailMetrics)."""
    conf, pred = probs.max(-1)
    return float(_bin_gap(conf, (pred == targets).to(conf), n_bins) / len(targets))


def classwise_ece(probs: Tensor, targets: Tensor, n_bins: int = 15) -> float:
    """Classwise ECE (Kull et al. 2019): for each class c, the ECE of p_c against 1[y = c] over all samples, with
    bins [0, 1/B], (1/B, 2/B], ...; averaged over classes."""
    n, c = probs.shape
    onehot = F.one_hot(targets.long(), c).to(probs)
    return float(sum(_bin_gap(probs[:, j], onehot[:, j], n_bins) for j in range(c)) / (n * c))


def reliability_bins(probs: Tensor, targets: Tensor, n_bins: int = 15) -> dict[str, list[float]]:
    """Per confidence bin: count, mean confidence, accuracy (the layout plots.plot_reliability reads)."""
    conf, pred = probs.max(-1)
    bins = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, torch.ones_like(conf, dtype=torch.float64))
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, conf.double())
    hit_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins, (pred == targets).double())
    safe = count.clamp_min(1)
    return {"count": count.tolist(), "confidence": (conf_sum / safe).tolist(), "accuracy": (hit_sum / safe).tolist()}


def calibration_scores(logits: Tensor, targets: Tensor, n_bins: int = 15) -> dict[str, float]:
    """acc (sample), ece, classwise_ece, nll, brier of logits [N, C]."""
    probs = F.softmax(logits.double(), dim=-1)
    return {
        "acc": float((probs.argmax(-1) == targets).double().mean()),
        "ece": ece(probs, targets, n_bins),
        "classwise_ece": classwise_ece(probs, targets, n_bins),
        "nll": nll(logits, targets),
        "brier": brier_score(probs, targets),
    }
