"""What an item of every dataset here is: the stored image through the dataset's transform, then the label; with
`TwoViews` as the transform, two augmented views of the same image, (x1, x2, y), for the contrastive branch."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset


class TwoViews(nn.Module):
    """(view1(img), view2(img)): the query and key views of one image, drawn in that order (MoCo's two crops)."""

    def __init__(self, view1: nn.Module, view2: nn.Module) -> None:
        super().__init__()
        self.view1, self.view2 = view1, view2

    def forward(self, img):
        return self.view1(img), self.view2(img)


class ImageDataset(Dataset):
    """Base of the datasets: a subclass stores the images and `load(i)` returns the i-th as stored; `transform` (None:
    none) maps it to the model input, or to a tuple of inputs (`TwoViews`): an item is (x, y) or (x1, x2, y)."""

    targets: torch.Tensor  # int64 (N,)
    transform: nn.Module | None

    def load(self, i: int):
        """The i-th image as stored (uint8 tensor, or decoded PIL image), before any transform."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        x = self.load(i)
        if self.transform is not None:
            x = self.transform(x)
        return (*x, self.targets[i]) if isinstance(x, tuple) else (x, self.targets[i])
