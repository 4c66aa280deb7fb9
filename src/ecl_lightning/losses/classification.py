"""Label losses: balanced softmax (logit-adjusted CE) and NCL's hard category mining (SPEC 4.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

HCM_MASKS = ("neg_inf", "zero")


def balanced_softmax_loss(logits: Tensor, target: Tensor, log_prior: Tensor, tau: float = 1.0) -> Tensor:
    """Mean CE(logits + tau * log_prior, target); tau = 0 gives plain cross-entropy."""
    return F.cross_entropy(logits.float() + tau * log_prior.float(), target)


def hard_category_mining_loss(
    logits: Tensor,
    target: Tensor,
    log_prior: Tensor,
    mining_logits: Tensor,
    k: int,
    tau: float = 1.0,
    mask: str = "neg_inf",
) -> Tensor:
    """NCL's HCM: balanced-softmax CE restricted per sample to the top-k classes of `mining_logits`.

    The true class is always kept (it replaces the k-th class when not in the top-k). The mask is applied to
    the adjusted logits (logits + tau * log_prior): "neg_inf" drops the other classes from the softmax, "zero"
    multiplies them by 0 as NCL's code does (they stay in the denominator with logit 0).
    """
    if mask not in HCM_MASKS:
        raise ValueError(f"hcm mask must be one of {HCM_MASKS}, got {mask!r}")
    if k < 1:
        raise ValueError(f"hcm k must be >= 1, got {k}")
    num_classes = logits.shape[-1]
    if k >= num_classes:
        return balanced_softmax_loss(logits, target, log_prior, tau)
    with torch.no_grad():
        idx = mining_logits.detach().float().topk(k, dim=-1).indices  # [B, k]
        in_topk = (idx == target[:, None]).any(dim=-1)
        idx[:, -1] = torch.where(in_topk, idx[:, -1], target)
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)
    adjusted = logits.float() + tau * log_prior.float()
    adjusted = adjusted.masked_fill(~keep, float("-inf")) if mask == "neg_inf" else adjusted * keep
    return F.cross_entropy(adjusted, target)
