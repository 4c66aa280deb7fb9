"""The split-file recipes (ImageNet-LT, Places-LT, iNat) on decoded images of different sizes, batched on their device.

`data.decode=bytes` decodes a batch into a list of uint8 (3, H_i, W_i) images (data/datasets/encoded.py). The crop
that gives every image the same size runs per image (a crop box drawn per image, torchvision's crop-and-resize
kernel, then stack); everything after it runs once per batch with the ops of data/transforms/gpu.py, plus a batched
RandAugment here.
The CPU path these mirror is `imagefolder_transforms` (data/transforms/recipes.py), on PIL images.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ecl_lightning.data.transforms.gpu import (
    ColorJitter,
    GaussianBlur,
    Normalize,
    RandomGrayscale,
    RandomHorizontalFlip,
    ToFloat,
    TorchvisionPolicy,
    _first_valid,
    _randint_below,
    _sample_boxes,
    _uniform,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    by_group,
)


def sample_crop_boxes(
    heights: Tensor, widths: Tensor, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(top, left, height, width), int64 (B,), of one v2.RandomResizedCrop box per image of size heights x widths:
    torchvision's ten tries (area uniform in scale x image area, log aspect uniform in log ratio), then its central
    fallback crop with the aspect clamped into ratio; drawn on the CPU, no loop over images."""
    n = len(heights)
    h_img, w_img = heights[:, None].double(), widths[:, None].double()
    w, h = _sample_boxes(n, h_img, w_img, scale, ratio, heights.device)  # RRC: w from area * aspect
    valid = (w > 0) & (w <= w_img) & (h > 0) & (h <= h_img)
    h, w = (t.long() for t in _first_valid(valid, h, w))
    top, left = _randint_below(heights - h + 1), _randint_below(widths - w + 1)
    aspect = widths.double() / heights.double()
    lo, hi = min(ratio), max(ratio)
    fallback_w = torch.where(aspect > hi, torch.round(heights * hi).long(), widths)
    fallback_h = torch.where(aspect < lo, torch.round(widths / lo).long(), heights)
    fallback = ~valid.any(1)
    h, w = torch.where(fallback, fallback_h, h), torch.where(fallback, fallback_w, w)
    top = torch.where(fallback, (heights - fallback_h) // 2, top)
    left = torch.where(fallback, (widths - fallback_w) // 2, left)
    return top, left, h, w


def _sizes(images: list[Tensor]) -> tuple[Tensor, Tensor]:
    sizes = torch.tensor([tuple(img.shape[-2:]) for img in images], dtype=torch.int64)
    return sizes[:, 0], sizes[:, 1]


class RandomResizedCropEach(nn.Module):
    """v2.RandomResizedCrop(size, scale, ratio) of each image of a list of uint8 images of any sizes -> one uint8
    (B, C, size, size) batch: a box per image (sample_crop_boxes), bilinear with antialias as torchvision's tensor
    kernel (one call per image: the images differ in size)."""

    def __init__(
        self, size: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
    ) -> None:
        super().__init__()
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)

    def forward(self, images: list[Tensor]) -> Tensor:
        boxes = torch.stack(sample_crop_boxes(*_sizes(images), self.scale, self.ratio), 1).tolist()
        size = [self.size, self.size]
        return torch.stack(
            [F.resized_crop(img, *box, size, antialias=True) for img, box in zip(images, boxes, strict=True)]
        )

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}"


class ResizeCenterCropEach(nn.Module):
    """v2.Resize(resize_size) (shorter side, antialias) then v2.CenterCrop(size) of each image -> uint8 batch."""

    def __init__(self, size: int, resize_size: int) -> None:
        super().__init__()
        self.size, self.resize_size = size, resize_size

    def forward(self, images: list[Tensor]) -> Tensor:
        return torch.stack(
            [F.center_crop(F.resize(img, [self.resize_size], antialias=True), [self.size]) for img in images]
        )

    def extra_repr(self) -> str:
        return f"size={self.size}, resize_size={self.resize_size}"


class ToUint8(nn.Module):
    """A float batch in [0, 1] -> uint8, rounded (for the ops that need uint8 after the float colour ops)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mul(255).round_().to(torch.uint8)


class RandAugment(TorchvisionPolicy):
    """v2.RandAugment(num_ops, magnitude) on a uint8 batch: per sample and round, an op drawn uniformly from
    torchvision's space and, for signed ops, a sign; each (op, sign) group runs once through torchvision's own kernels
    (batched: they treat each image separately), as gpu.AutoAugment does for its sub-policies."""

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31) -> None:
        super().__init__()
        self.reference = v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=num_magnitude_bins)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.uint8:
            raise TypeError(f"RandAugment expects a uint8 batch, got {x.dtype}")
        ref = self.reference
        n, _, height, width = x.shape
        space = list(ref._AUGMENTATION_SPACE.items())
        signed = torch.tensor([s for _, (_, s) in space], device=x.device)

        def run(k: int, group: Tensor) -> Tensor:  # k: 2 x op + (1 for a negative magnitude)
            name, (magnitudes_fn, _) = space[k // 2]
            magnitudes = magnitudes_fn(ref.num_magnitude_bins, height, width)
            magnitude = float(magnitudes[ref.magnitude]) if magnitudes is not None else 0.0
            return self.apply_op(group, name, -magnitude if k % 2 else magnitude)

        for _ in range(ref.num_ops):
            op = torch.randint(len(space), (n,), device=x.device)
            negative = signed[op] & (torch.rand(n, device=x.device) <= 0.5)
            x = by_group(x, op * 2 + negative.long(), 2 * len(space), run)
        return x

    def extra_repr(self) -> str:
        return f"num_ops={self.reference.num_ops}, magnitude={self.reference.magnitude}"


class GroupedColorJitter(ColorJitter):
    """gpu.ColorJitter's distribution (v2.RandomApply([v2.ColorJitter(b, c, s, h)], p): per-sample factors and
    op order), but each sample runs only its own ops: at each position of the order the samples are grouped by the op
    they apply there, so a batch costs one pass of each op, not all four ops at every position (measured 6-7x less
    at 224 px on the CPU, docs/performance.md); hue 0 is left out, as torchvision leaves it out."""

    def forward(self, x: Tensor) -> Tensor:
        n, dev = x.shape[0], x.device
        spreads = (self.brightness, self.contrast, self.saturation)
        factors = [_uniform((n,), max(0.0, 1.0 - v), 1.0 + v, dev) for v in spreads]
        ops = [adjust_brightness, adjust_contrast, adjust_saturation]
        if self.hue > 0:
            factors.append(_uniform((n,), -self.hue, self.hue, dev))
            ops.append(adjust_hue)
        order = torch.rand(n, len(ops), device=dev).argsort(1)  # a uniform random order of the ops per sample
        apply = torch.rand(n, device=dev) < self.p
        out = x.clone()
        for k in range(len(ops)):
            for j, (op, factor) in enumerate(zip(ops, factors, strict=True)):
                idx = ((order[:, k] == j) & apply).nonzero().squeeze(1)
                if len(idx):
                    out[idx] = op(out[idx], factor[idx])
        return out


class ImageListTransforms(nn.Module):
    """The two training views and the eval transform of a list of decoded uint8 images, on the images' device,
    outside autograd and autocast."""

    def __init__(self, view1: nn.Module, view2: nn.Module, evaluate: nn.Module) -> None:
        super().__init__()
        self.view1, self.view2, self.evaluate = view1, view2, evaluate

    def _to(self, images: list[Tensor]) -> None:
        buffer = next(self.buffers(), None)
        if images and buffer is not None and buffer.device != images[0].device:
            self.to(images[0].device)  # the datamodule owns this module, so Lightning does not move it

    def two_views(self, images: list[Tensor]) -> tuple[Tensor, Tensor]:
        self._to(images)
        with torch.no_grad(), torch.autocast(images[0].device.type, enabled=False):
            return self.view1(images), self.view2(images)

    def eval_batch(self, images: list[Tensor]) -> Tensor:
        self._to(images)
        with torch.no_grad(), torch.autocast(images[0].device.type, enabled=False):
            return self.evaluate(images)


def split_file_gpu_transforms(
    recipe: str,
    image_size: int,
    resize_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool = True,
) -> ImageListTransforms:
    """Batched `imagefolder_transforms` for decoded images: view 1 RRC, flip, jitter, RandAugment n2 m10 (recipe
    `randaugment`) or SimCLR (`simclr`); view 2 SimCLR; eval resize + centre crop (docs/method.md 4)."""
    if recipe not in ("randaugment", "simclr"):
        raise ValueError(f"recipe must be 'randaugment' or 'simclr', got {recipe!r}")
    norm = [ToFloat(), Normalize(mean, std)]
    evaluate = nn.Sequential(ResizeCenterCropEach(image_size, resize_size), *norm)
    if not augment:
        return ImageListTransforms(evaluate, evaluate, evaluate)
    blur_kernel = int(0.1 * image_size) // 2 * 2 + 1  # as the CPU recipe: 23 at 224
    simclr = nn.Sequential(
        RandomResizedCropEach(image_size, scale=(0.08, 1.0)),
        RandomHorizontalFlip(),
        ToFloat(),
        GroupedColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        RandomGrayscale(p=0.2),
        GaussianBlur(blur_kernel, sigma=(0.1, 2.0), p=0.5),
        Normalize(mean, std),
    )
    if recipe == "simclr":
        return ImageListTransforms(simclr, simclr, evaluate)
    view1 = nn.Sequential(
        RandomResizedCropEach(image_size, scale=(0.08, 1.0)),
        RandomHorizontalFlip(),
        ToFloat(),
        GroupedColorJitter(0.4, 0.4, 0.4, 0.0),  # always on, no hue (the CPU recipe); float, rounded once below
        ToUint8(),
        RandAugment(num_ops=2, magnitude=10),
        *norm,
    )
    return ImageListTransforms(view1, simclr, evaluate)
