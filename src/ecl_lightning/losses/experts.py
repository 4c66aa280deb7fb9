"""Label losses that make experts differ (docs/method.md, section 3.1): per-expert logit adjustment (SADE, BalPoE),
LDAM with deferred re-weighting and RIDE's distribution-aware diversity term.

Pure functions of tensors. Logits of K experts are [K, B, C]; a per-expert bias is [K, C].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LABEL_LOSSES = ("ce", "ldam")
EXPERT_REDUCTIONS = ("sum", "mean")


def inverse_prior(prior: Tensor) -> Tensor:
    """SADE's inverse prior: the class at rank r (by prior) gets the prior of the class at rank C - 1 - r.

    The most frequent class takes the rarest class's prior and so on (a mirrored profile, still summing to 1);
    not 1 / prior. Classes of equal prior are ranked by index (a stable sort; SADE's model/loss.py lines 255-261
    leave their order to torch.sort, so tied classes may get each other's mirrored values there).
    """
    order = torch.sort(prior, stable=True).indices
    mirrored = torch.empty_like(prior)
    mirrored[order] = prior[order.flip(0)]
    return mirrored


def expert_label_biases(
    prior: Tensor,
    tau: Sequence[float],
    inverse_tau: Sequence[float] | None = None,
    eps: float = 0.0,
) -> Tensor:
    """[K, C] biases b_k = tau_k * log(prior + eps) + inverse_tau_k * log(inverse_prior + eps).

    tau_k = 0: plain CE (the long-tailed, "forward" expert); 1: balanced softmax; BalPoE's lambda list is tau;
    SADE's backward expert is tau = 1, inverse_tau = -2 (its `tau`). eps is the released codes' 1e-9. Computed in
    the prior's dtype (give float64 for the same float32 values as log(prior) cast once).
    """
    prior = prior if prior.is_floating_point() else prior.double()
    log_prior = (prior + eps).log()
    taus = torch.as_tensor(list(tau), dtype=prior.dtype, device=prior.device)[:, None]
    biases = taus * log_prior
    if inverse_tau is not None:
        inv = torch.as_tensor(list(inverse_tau), dtype=prior.dtype, device=prior.device)[:, None]
        if inv.shape != taus.shape:
            raise ValueError(f"inverse_tau has {inv.shape[0]} entries, tau has {taus.shape[0]}")
        biases = biases + inv * (inverse_prior(prior) + eps).log()
    return biases


def ldam_margins(class_counts: Tensor, max_m: float = 0.5) -> Tensor:
    """LDAM's per-class margins m_j = C' / n_j^(1/4), scaled so that the largest is max_m (Cao et al. 2019)."""
    m = class_counts.double().pow(-0.25)
    return (m * (max_m / m.max())).float()


def drw_class_weights(class_counts: Tensor, beta: float = 0.9999) -> Tensor:
    """Deferred re-weighting's class weights: (1 - beta) / (1 - beta^n_j), normalised to sum to C (Cui et al. 2019)."""
    counts = class_counts.double()
    w = (1.0 - beta) / (1.0 - torch.pow(torch.full_like(counts, beta), counts))
    return (w / w.sum() * counts.numel()).float()


def expert_label_loss(
    logits: Tensor,
    target: Tensor,
    biases: Tensor,
    margins: Tensor | None = None,
    margin_scale: float = 1.0,
    class_weight: Tensor | None = None,
    reduction: str = "sum",
) -> Tensor:
    """Sum (or mean) over experts of CE(z_k + b_k - margin_scale * m_y * onehot(y), y), class-weighted if given.

    `margins` None: logit-adjusted CE (SADE, BalPoE, balanced softmax with b_k = log prior). With margins: LDAM on
    the true class's logit (RIDE: margin_scale = s = 30). A class weight gives the weighted mean, as F.cross_entropy.
    """
    if reduction not in EXPERT_REDUCTIONS:
        raise ValueError(f"expert reduction must be one of {EXPERT_REDUCTIONS}, got {reduction!r}")
    adjusted = logits.float() + biases.float()[:, None, :]
    if margins is not None:
        onehot = F.one_hot(target, adjusted.shape[-1]).to(adjusted.dtype)
        adjusted = adjusted - margin_scale * margins.float()[target][:, None] * onehot
    total = sum(F.cross_entropy(adjusted[k], target, weight=class_weight) for k in range(adjusted.shape[0]))
    return total / adjusted.shape[0] if reduction == "mean" else total


def ride_diversity_temperature(
    class_counts: Tensor, base_temperature: float = 1.0, reweight_factor: float = 0.05
) -> Tensor:
    """RIDE's per-class diversity temperatures: base * w_j, w_j = C * prior_j * r + 1 - r, divided by max_j w_j."""
    prior = class_counts.double() / class_counts.double().sum()
    w = prior.numel() * prior * reweight_factor + 1.0 - reweight_factor
    return (base_temperature * w / w.max()).float()


def ride_diversity_loss(logits: Tensor, temperature: Tensor | float = 1.0) -> Tensor:
    """RIDE's diversity term: sum_k T^2 * KL(softmax(zbar / T) || softmax(z_k / T)), batch mean.

    zbar is the mean of the experts' logits, detached (the teacher); T a scalar or a per-class vector [C], in which
    case T^2 uses its mean, as released. Weighted by a *negative* factor, it pushes the experts apart.
    """
    z = logits.float()
    t = torch.as_tensor(temperature, dtype=z.dtype, device=z.device)
    t_mean = float(t.mean())
    with torch.no_grad():
        teacher = F.softmax(z.mean(0) / t, dim=-1)
    total = z.new_zeros(())
    for k in range(z.shape[0]):
        log_q = F.log_softmax(z[k] / t, dim=-1)
        total = total + t_mean * t_mean * F.kl_div(log_q, teacher, reduction="batchmean")
    return total


def mixup_batch(x: Tensor, alpha: float) -> tuple[Tensor, Tensor, float]:
    """Mixup (Zhang et al. 2018) as BalPoE's combiner: lam ~ Beta(alpha, alpha), one random permutation of the batch.

    Returns (lam * x + (1 - lam) * x[perm], perm, lam); a target-dependent loss L becomes
    lam * L(y) + (1 - lam) * L(y[perm]). Draws from the global torch RNG (seeded, and saved in checkpoints).
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    lam = float(torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha))).sample())
    perm = torch.randperm(x.shape[0]).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], perm, lam
