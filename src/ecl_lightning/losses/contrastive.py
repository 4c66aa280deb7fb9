"""Contrastive proxy task per expert: MoCo InfoNCE and a supervised variant against key + queue (docs/method.md 2.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _logits(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """[B, 1 + N] similarities [q.k, q @ queue.T] / T with q, k L2-normalised and k, queue detached."""
    q = F.normalize(q.float(), dim=-1)
    k = F.normalize(k.detach().float(), dim=-1)
    l_pos = (q * k).sum(dim=-1, keepdim=True)
    l_neg = q @ queue.detach().float().T
    return torch.cat([l_pos, l_neg], dim=1) / temperature


def moco_loss(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """InfoNCE: query q [B, d], key k [B, d] (positive), queue [N, d] (negatives); mean CE with label 0."""
    logits = _logits(q, k, queue, temperature)
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def supcon_loss(
    q: Tensor, k: Tensor, queue: Tensor, target: Tensor, queue_target: Tensor, temperature: float = 0.2
) -> Tensor:
    """Supervised contrastive (SupCon L_out) of each query against its own key and the queue.

    Positives: the own key and queue entries with the same label; the loss of a query is the mean over its
    positives of -log softmax. Empty slots (queue_target == -1) are left out: neither positive nor negative.
    """
    logits = _logits(q, k, queue, temperature)
    valid = torch.cat([torch.ones_like(queue_target[:1], dtype=torch.bool), queue_target >= 0])  # [1 + N]
    logits = logits.masked_fill(~valid[None, :], float("-inf"))
    own = torch.ones_like(target[:, None], dtype=torch.bool)
    positive = torch.cat([own, (queue_target[None, :] == target[:, None]) & (queue_target[None, :] >= 0)], dim=1)
    log_prob = F.log_softmax(logits, dim=1)
    # where() rather than a product: log_prob is -inf on excluded slots and -inf * 0 would be NaN.
    pos_log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -(pos_log_prob / positive.sum(dim=1)).mean()
