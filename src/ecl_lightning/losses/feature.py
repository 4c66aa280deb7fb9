"""Feature-level distillation between experts' pooled features (docs/method.md 2.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FEAT_DISTANCES = ("mse", "cosine")
FEAT_TARGETS = ("others_mean", "pairwise")


def _distance(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """Distance over the last dim: squared L2 ("mse") or 1 - cosine similarity ("cosine")."""
    if distance == "mse":
        return (a - b).pow(2).sum(dim=-1)
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


def feature_distillation_loss(feats: Tensor, distance: str = "mse", target: str = "others_mean") -> Tensor:
    """Per-expert losses [K] (batch mean) pulling f_k/|f_k| towards stop-grad targets from the other experts.

    others_mean: d(f_hat_k, sg(mean_{j != k} f_hat_j)); pairwise: mean_{j != k} d(f_hat_k, sg(f_hat_j)).
    feats: [K, B, F]. K = 1 gives zeros(1).
    """
    if distance not in FEAT_DISTANCES:
        raise ValueError(f"feat_distance must be one of {FEAT_DISTANCES}, got {distance!r}")
    if target not in FEAT_TARGETS:
        raise ValueError(f"feat_target must be one of {FEAT_TARGETS}, got {target!r}")
    num_experts = feats.shape[0]
    if num_experts == 1:
        return torch.zeros(1, device=feats.device)
    f_hat = F.normalize(feats.float(), dim=-1)
    if target == "others_mean":
        others = ((f_hat.sum(dim=0, keepdim=True) - f_hat) / (num_experts - 1)).detach()
        return _distance(f_hat, others, distance).mean(dim=-1)
    # pairwise: d[k, j, b] = d(f_hat_k, sg(f_hat_j)); average over j != k and the batch.
    d = _distance(f_hat[:, None], f_hat.detach()[None, :], distance)
    off_diag = ~torch.eye(num_experts, dtype=torch.bool, device=feats.device)
    return (d.mean(dim=-1) * off_diag).sum(dim=1) / (num_experts - 1)
