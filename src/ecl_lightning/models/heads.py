"""Classifier heads on pooled features: linear, or cosine s * <f/|f|, w/|w|>."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LinearHead(nn.Module):
    """Plain linear classifier."""

    def __init__(self, in_dim: int, num_classes: int, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class CosineHead(nn.Module):
    """Cosine classifier: logits = scale * <x/|x|, w_c/|w_c|> (no bias)."""

    def __init__(self, in_dim: int, num_classes: int, scale: float = 16.0):
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default init

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_dim={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, scale={self.scale}"


def build_head(kind: str, in_dim: int, num_classes: int, scale: float = 16.0) -> nn.Module:
    """Build a head by kind: "linear" or "cosine" (scale used only by cosine)."""
    if kind == "linear":
        return LinearHead(in_dim, num_classes)
    if kind == "cosine":
        return CosineHead(in_dim, num_classes, scale)
    raise ValueError(f"unknown head {kind!r}; choose 'linear' or 'cosine'")
