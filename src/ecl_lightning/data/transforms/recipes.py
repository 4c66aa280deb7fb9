"""Per-dataset augmentation pipelines on uint8 CHW tensors (torchvision.transforms.v2, no PIL round trip)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)
# The CIFAR statistics used by LDAM, NCL and PaCo's code (not the exact per-channel std 0.247/0.243/0.261).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


class Cutout(nn.Module):
    """Zero a size x size square at a uniform random centre, clipped at the border (DeVries & Taylor)."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.size = size

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
        y0, y1 = max(cy - self.size // 2, 0), min(cy + self.size - self.size // 2, h)
        x0, x1 = max(cx - self.size // 2, 0), min(cx + self.size - self.size // 2, w)
        img = img.clone()
        img[..., y0:y1, x0:x1] = 0.0
        return img

    def extra_repr(self) -> str:
        return f"size={self.size}"


def _to_normalised(mean: tuple[float, ...], std: tuple[float, ...]) -> list[nn.Module]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def fmnist_transforms(augment: bool = True) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) for 1x28x28 uint8 images: crop pad 2 + flip; view 2 adds random erasing."""
    norm = _to_normalised(FMNIST_MEAN, FMNIST_STD)
    evaluate = v2.Compose(norm)
    if not augment:
        return evaluate, evaluate, evaluate
    geometric = [v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip()]
    view1 = v2.Compose([*geometric, *norm])
    view2 = v2.Compose([*geometric, *norm, v2.RandomErasing(value=0.0)])
    return view1, view2, evaluate


def cifar_transforms(augment: bool = True) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) for 3x32x32 uint8: view 1 AutoAugment + Cutout, view 2 SimCLR (docs/method.md 4)."""
    norm = _to_normalised(CIFAR_MEAN, CIFAR_STD)
    evaluate = v2.Compose(norm)
    if not augment:
        return evaluate, evaluate, evaluate
    view1 = v2.Compose(
        [
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
            *norm,
            Cutout(16),  # after normalisation, as in the Cutout paper: the square becomes the mean colour
        ]
    )
    view2 = v2.Compose(
        [
            v2.RandomResizedCrop(32, scale=(0.2, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            # SimCLR's kernel is 10% of the image side; 3 at 32 px.
            v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5),
            *norm,
        ]
    )
    return view1, view2, evaluate
