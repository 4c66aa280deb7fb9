"""Label losses: balanced softmax (logit-adjusted CE) and NCL's hard category mining (docs/method.md 2.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

HCM_MASKS = ("neg_inf", "zero")


def balanced_softmax_loss(logits: Tensor, target: Tensor, log_prior: Tensor, tau: float = 1.0) -> Tensor:
    """Mean CE(logits + tau * log_prior, target); tau = 0 gives plain cross-entropy."""
    return F.cross_entropy(logits.float() + tau * log_prior.float(), target)


def hcm_keep_mask(mining_logits: Tensor, target: Tensor, k: int) -> Tensor:
    """[B, C] bool: the true class and the k - 1 other classes with the highest `mining_logits` (detached).

    Equal to NCL's selection (lib/loss/loss.py, NIL_NBOD.forward: the target's logit set to 999999, then the top
    HCM_N by a descending sort). k >= C keeps every class.
    """
    if k < 1:
        raise ValueError(f"hcm k must be >= 1, got {k}")
    with torch.no_grad():
        ranked = mining_logits.detach().float().scatter(-1, target[:, None], float("inf"))
        idx = ranked.topk(min(k, ranked.shape[-1]), dim=-1).indices
        return torch.zeros_like(ranked, dtype=torch.bool).scatter_(-1, idx, True)


def hcm_logits(logits: Tensor, log_counts: Tensor, keep: Tensor, tau: float = 1.0, mask: str = "neg_inf") -> Tensor:
    """The mined logits a = z + tau * log n, restricted to `keep` ([..., B, C]; keep [B, C] broadcasts over experts).

    "neg_inf": a outside `keep` is -inf (the classes leave the softmax; shift-invariant, so log n and log prior give
    the same loss). "zero": a * keep, NCL's `logits * mask` with its raw class counts n_j (loss.py, lines 96-98):
    the excluded classes stay in the softmax with logit 0, and the kept ones are *not* shift-invariant, so `log_counts`
    must be log n_j, not log(n_j / N).
    """
    if mask not in HCM_MASKS:
        raise ValueError(f"hcm mask must be one of {HCM_MASKS}, got {mask!r}")
    adjusted = logits.float() + tau * log_counts.float()
    return adjusted.masked_fill(~keep, float("-inf")) if mask == "neg_inf" else adjusted * keep


def hard_category_mining_loss(
    logits: Tensor,
    target: Tensor,
    log_counts: Tensor,
    mining_logits: Tensor,
    k: int,
    tau: float = 1.0,
    mask: str = "neg_inf",
) -> Tensor:
    """NCL's HCM: CE of the mined logits (`hcm_logits`) over the classes `hcm_keep_mask` selects per sample."""
    keep = hcm_keep_mask(mining_logits, target, k)
    return F.cross_entropy(hcm_logits(logits, log_counts, keep, tau, mask), target)
