"""Every augmentation recipe of the CPU path, one definition each (torchvision.transforms.v2): the normalisation
statistics, the eval transform, and the (view 1, view 2, eval) transforms of each dataset family (docs/method.md 4).

Fashion-MNIST and CIFAR work on uint8 CHW tensors (no PIL round trip); the image-file recipes on decoded PIL images.
transforms/gpu.py mirrors the Fashion-MNIST and CIFAR recipes batched on the device.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

from ecl_lightning.data.input_spec import InputSpec

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)
# The CIFAR statistics used by LDAM, NCL and PaCo's code (not the exact per-channel std 0.247/0.243/0.261).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INAT_MEAN, INAT_STD = (0.466, 0.471, 0.380), (0.195, 0.194, 0.192)


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


def _normalise_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> list[nn.Module]:
    """uint8 tensor -> float tensor scaled to [0, 1] and normalised."""
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def _normalise_image(mean: tuple[float, ...], std: tuple[float, ...]) -> list[nn.Module]:
    """PIL image (or uint8 tensor) -> plain float tensor scaled to [0, 1] and normalised."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std), v2.ToPureTensor()]


def _resize_crop(resize_size: int, image_size: int) -> list[nn.Module]:
    """The eval geometry: the shorter side resized to `resize_size`, then a centre crop of `image_size`."""
    return [v2.Resize(resize_size, antialias=True), v2.CenterCrop(image_size)]


def eval_transform(spec: InputSpec) -> nn.Module:
    """PIL image (already in the spec's mode) -> normalised float tensor (channels, image_size, image_size): the test
    images' transform, and predict's and export's."""
    return v2.Compose([*_resize_crop(spec.resize_size, spec.image_size), *_normalise_image(spec.mean, spec.std)])


def _crop_flip_views(
    size: int, padding: int, norm: list[nn.Module], prepare: list[nn.Module] | None = None
) -> tuple[nn.Module, nn.Module]:
    """(view 1, view 2): `prepare`, random crop with zero padding + flip, `norm`; view 2 then adds random erasing."""
    geometric = [*(prepare or []), v2.RandomCrop(size, padding=padding), v2.RandomHorizontalFlip()]
    return v2.Compose([*geometric, *norm]), v2.Compose([*geometric, *norm, v2.RandomErasing(value=0.0)])


def _simclr_view(size: int, scale: tuple[float, float], norm: list[nn.Module]) -> nn.Module:
    """SimCLR's view: random resized crop, flip, colour jitter (p 0.8), grey (p 0.2), Gaussian blur (p 0.5)."""
    blur_kernel = int(0.1 * size) // 2 * 2 + 1  # SimCLR: 10% of the side, odd (3 at 32 px, 23 at 224)
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(blur_kernel, sigma=(0.1, 2.0))], p=0.5),
            *norm,
        ]
    )


def fmnist_transforms(augment: bool = True) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) for 1x28x28 uint8 images: crop pad 2 + flip; view 2 adds random erasing."""
    norm = _normalise_tensor(FMNIST_MEAN, FMNIST_STD)
    evaluate = v2.Compose(norm)
    if not augment:
        return evaluate, evaluate, evaluate
    view1, view2 = _crop_flip_views(28, 2, norm)
    return view1, view2, evaluate


def small_transforms(spec: InputSpec, crop_padding: int, augment: bool = True) -> tuple[nn.Module, ...]:
    """(view 1, view 2, eval) of the image folders' `small` preset on PIL images: resize + centre crop to the image
    size, then the Fashion-MNIST recipe (random crop with padding + flip; view 2 adds random erasing) at that size."""
    evaluate = eval_transform(spec)
    if not augment:
        return evaluate, evaluate, evaluate
    prepare = _resize_crop(spec.resize_size, spec.image_size)
    view1, view2 = _crop_flip_views(spec.image_size, crop_padding, _normalise_image(spec.mean, spec.std), prepare)
    return view1, view2, evaluate


def cifar_transforms(augment: bool = True) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) for 3x32x32 uint8: view 1 AutoAugment + Cutout, view 2 SimCLR (docs/method.md 4)."""
    norm = _normalise_tensor(CIFAR_MEAN, CIFAR_STD)
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
    return view1, _simclr_view(32, (0.2, 1.0), norm), evaluate


def imagefolder_transforms(
    recipe: str,
    image_size: int = 224,
    resize_size: int = 256,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    augment: bool = True,
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) on PIL images of the split-file benchmarks and the image folders' `imagenet` preset.
    recipe `randaugment`: view 1 RRC, flip, jitter, RandAugment n2 m10 (ImageNet-LT, iNat), view 2 SimCLR; `simclr`:
    both views SimCLR (Places-LT). Eval: resize, centre crop."""
    if recipe not in ("randaugment", "simclr"):
        raise ValueError(f"recipe must be 'randaugment' or 'simclr', got {recipe!r}")
    norm = _normalise_image(mean, std)
    evaluate = v2.Compose([*_resize_crop(resize_size, image_size), *norm])
    if not augment:
        return evaluate, evaluate, evaluate
    simclr = _simclr_view(image_size, (0.08, 1.0), norm)
    if recipe == "simclr":
        return simclr, simclr, evaluate
    # PaCo / NCL's ImageNet-LT view: jitter always on, without hue, then RandAugment.
    view1 = v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=(0.08, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.4, 0.4, 0.4),
            v2.RandAugment(num_ops=2, magnitude=10),
            *norm,
        ]
    )
    return view1, simclr, evaluate
