"""Online (re-weighted) distillation between experts: teachers, sample weights, weighted KL (docs/method.md 2.2-2.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

REWEIGHT_RULES = ("ratio", "difference", "none")
KD_TARGETS = ("ensemble", "pairwise")


def ensemble_teacher(logits: Tensor, log_prior: Tensor, temperature: float = 1.0, detach: bool = True) -> Tensor:
    """Per-expert teacher t_k = mean_{j != k} softmax((z_j + log_prior) / T) for label logits [K, B, C]."""
    probs = _expert_probs(logits, log_prior, temperature)
    teacher = (probs.sum(dim=0, keepdim=True) - probs) / (probs.shape[0] - 1)
    return teacher.detach() if detach else teacher


def peer_teachers(logits: Tensor, log_prior: Tensor, temperature: float = 1.0, detach: bool = True) -> Tensor:
    """Per-expert teachers [K, K - 1, B, C]: for expert k, each other expert's softmax((z_j + log_prior) / T).

    With `kd_loss` this is NCL's NBOD (lib/loss/loss.py, NBOD): the mean over j != k of KL(p_j || p_k), not the KL
    from the mean p_j; the student's gradient is the same, the value and (undetached) the teachers' gradients differ.
    """
    probs = _expert_probs(logits, log_prior, temperature)
    num_experts = probs.shape[0]
    others = torch.stack([probs[[j for j in range(num_experts) if j != k]] for k in range(num_experts)])
    return others.detach() if detach else others


def online_teachers(
    logits: Tensor, log_prior: Tensor, temperature: float = 1.0, detach: bool = True, target: str = "ensemble"
) -> Tensor:
    """`ensemble_teacher` ([K, B, C]) or `peer_teachers` ([K, K - 1, B, C]) by `target` (model.loss.kd_target)."""
    if target not in KD_TARGETS:
        raise ValueError(f"kd target must be one of {KD_TARGETS}, got {target!r}")
    build = ensemble_teacher if target == "ensemble" else peer_teachers
    return build(logits, log_prior, temperature, detach)


def _expert_probs(logits: Tensor, log_prior: Tensor, temperature: float) -> Tensor:
    if logits.dim() != 3 or logits.shape[0] < 2:
        raise ValueError(f"online distillation needs logits of shape [K, B, C] with K >= 2, got {tuple(logits.shape)}")
    return F.softmax((logits.float() + log_prior.float()) / temperature, dim=-1)


def _true_class_probs(
    label_logits: Tensor, dist_logits: Tensor, target: Tensor, log_prior: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """p[y] = softmax(z + log_prior)[y] and q[y] = softmax((s + log_prior) / T)[y], detached, float32."""
    lp = log_prior.float()
    p = F.softmax(label_logits.detach().float() + lp, dim=-1)
    q = F.softmax((dist_logits.detach().float() + lp) / temperature, dim=-1)
    idx = target[:, None]
    return p.gather(-1, idx).squeeze(-1), q.gather(-1, idx).squeeze(-1)


def distillation_weights(
    label_logits: Tensor,
    dist_logits: Tensor,
    target: Tensor,
    log_prior: Tensor,
    rule: str = "ratio",
    gamma: float = 1.0,
    w_min: float = 0.1,
    w_max: float = 10.0,
    temperature: float = 1.0,
    eps: float = 1e-8,
) -> Tensor:
    """Per-sample distillation weights [B] (detached, not normalised): label head vs distillation head.

    ratio: clamp((p[y] / q[y]) ** gamma, w_min, w_max); difference: 1 + relu(p[y] - q[y]); none: ones.
    """
    if rule not in REWEIGHT_RULES:
        raise ValueError(
            f"reweight rule must be one of {REWEIGHT_RULES} "
            f"('class_ema' uses class_ema_update/class_ema_weights), got {rule!r}"
        )
    if rule == "none":
        return torch.ones(target.shape[0], device=target.device)
    p_y, q_y = _true_class_probs(label_logits, dist_logits, target, log_prior, temperature)
    if rule == "ratio":
        return ((p_y / q_y.clamp_min(eps)) ** gamma).clamp(w_min, w_max)
    return 1.0 + F.relu(p_y - q_y)


def class_ema_update(
    ema: Tensor,
    label_logits: Tensor,
    dist_logits: Tensor,
    target: Tensor,
    log_prior: Tensor,
    momentum: float = 0.9,
    temperature: float = 1.0,
    eps: float = 1e-3,
) -> Tensor:
    """New per-class EMA [C] of (label-head accuracy) / (distillation-head accuracy) measured on this batch.

    "Accuracy" on class c is the soft one: the mean true-class probability over the batch's samples of
    class c (p = softmax(z + log_prior), q = softmax((s + log_prior) / T)); unlike argmax accuracy it is never
    0/0 on small batches. ema[c] <- momentum * ema[c] + (1 - momentum) * mean_p[c] / max(mean_q[c], eps);
    classes absent from the batch keep their value. Pure: returns a new tensor; start from ones. Under DDP
    each process keeps its own EMA unless the caller gathers the batch first.
    """
    num_classes = ema.shape[0]
    p_y, q_y = _true_class_probs(label_logits, dist_logits, target, log_prior, temperature)
    count = torch.zeros(num_classes, device=ema.device).index_add_(0, target, torch.ones_like(p_y))
    sum_p = torch.zeros(num_classes, device=ema.device).index_add_(0, target, p_y)
    sum_q = torch.zeros(num_classes, device=ema.device).index_add_(0, target, q_y)
    present = count > 0
    ratio = sum_p / sum_q.clamp_min(eps * count.clamp_min(1))  # = mean_p / max(mean_q, eps)
    ema = ema.detach()
    updated = momentum * ema + (1.0 - momentum) * ratio.to(ema.dtype)
    return torch.where(present, updated, ema)


def class_ema_weights(ema: Tensor, target: Tensor, w_min: float = 0.1, w_max: float = 10.0) -> Tensor:
    """Per-sample weights [B] = clamp(ema[target], w_min, w_max), detached."""
    return ema.detach()[target].float().clamp(w_min, w_max)


def normalize_weights(weights: Tensor, mean: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """weights / mean, so they average 1 (mean: the batch mean by default, the all-process mean under DDP)."""
    if mean is None:
        mean = weights.mean()
    return weights / torch.as_tensor(mean, dtype=weights.dtype, device=weights.device).clamp_min(eps)


def kd_loss(
    student_logits: Tensor,
    teacher_probs: Tensor,
    log_prior: Tensor,
    temperature: float = 1.0,
    weights: Tensor | None = None,
) -> Tensor:
    """T^2 * mean_b w_b * KL(t_b || softmax((s_b + log_prior) / T)) for student logits [B, C].

    teacher_probs [B, C], or [J, B, C] for several teachers: then the mean over j of KL(t_j || q) (NCL's NBOD).
    Classes where a teacher is exactly 0 contribute 0, also when the student's logit there is -inf (masked HCM logits).
    """
    log_q = F.log_softmax((student_logits.float() + log_prior.float()) / temperature, dim=-1)
    t = teacher_probs.float()
    # xlogy gives 0 * log 0 = 0; the gradient also reaches the teacher when it is not detached (NCL's KL).
    kl = (torch.xlogy(t, t) - t * torch.where(t == 0, 0.0, log_q)).sum(dim=-1)
    if kl.dim() == 2:
        kl = kl.mean(dim=0)
    if weights is not None:
        kl = kl * weights.float()
    return temperature**2 * kl.mean()
