"""Images held in memory as one uint8 (N, C, H, W) tensor (Fashion-MNIST, CIFAR): indexing, no decoding."""

from __future__ import annotations

import torch
from torch import nn

from ecl_lightning.data.datasets.views import ImageDataset


class ImageArrayDataset(ImageDataset):
    """(x, y) pairs, or (x1, x2, y) with `TwoViews`, from a uint8 (N, C, H, W) tensor; one transform per item."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform: nn.Module | None = None) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def load(self, i: int) -> torch.Tensor:
        return self.images[i]
