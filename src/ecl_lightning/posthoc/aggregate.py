"""Test-time aggregation of K experts' logits [K, N, C] into one prediction (log-probabilities or logits [N, C])."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

AGGREGATIONS = ("mean_logits", "mean_probs", "product", "selfsup")


def aggregate(logits: Tensor, method: str, weights: Tensor | None = None) -> Tensor:
    """Combine experts: `mean_logits` (mean z_k, today's ensemble), `mean_probs` (log of the mean softmax),
    `product` (sum of log-softmax: a product of experts, renormalised by any later softmax), `selfsup` (sum w_k z_k
    with weights from `fit_selfsup_weights`). The result is shift-equivalent to logits: softmax gives the prediction."""
    if method == "mean_logits":
        return logits.mean(0)
    if method == "mean_probs":
        return torch.logsumexp(F.log_softmax(logits, dim=-1), dim=0) - torch.log(torch.tensor(float(logits.shape[0])))
    if method == "product":
        return F.log_softmax(logits, dim=-1).sum(0)
    if method == "selfsup":
        if weights is None:
            raise ValueError("aggregate(method='selfsup') needs the fitted expert weights")
        return torch.einsum("k,knc->nc", weights.to(logits), logits)
    raise ValueError(f"unknown aggregation {method!r}; choose from {AGGREGATIONS}")


def fit_selfsup_weights(
    view1: Tensor,
    view2: Tensor,
    epochs: int = 1,
    lr: float = 0.1,
    batch_size: int = 128,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    min_weight: float = 0.05,
    seed: int = 0,
) -> Tensor:
    """SADE's test-time self-supervised aggregation: K softmax-normalised expert weights [K].

    Maximises the cosine similarity between softmax(sum_k w_k z_k) of two augmented views of the same unlabeled
    images (logits [K, N, C] each) by SGD (Nesterov) on the weights only, from uniform weights, shuffled batches;
    stops early, as SADE does, once an epoch ends with a weight below `min_weight`.
    """
    k, n, _ = view1.shape
    raw = torch.full((k,), 1.0 / k, requires_grad=True)
    opt = torch.optim.SGD([raw], lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            w = F.softmax(raw, dim=0)
            p1 = F.softmax(torch.einsum("k,knc->nc", w, view1[:, idx]), dim=-1)
            p2 = F.softmax(torch.einsum("k,knc->nc", w, view2[:, idx]), dim=-1)
            loss = -F.cosine_similarity(p1, p2, dim=-1, eps=1e-6).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if bool((F.softmax(raw, dim=0) < min_weight).any()):
            break
    return F.softmax(raw.detach(), dim=0)
