"""The batched ops of the split-file recipes (ImageNet-LT, Places-LT, iNat), on decoded images of different sizes.

`data.decode=bytes` decodes a batch into a list of uint8 (3, H_i, W_i) images (data/datasets/encoded.py). The crop
that gives every image the same size runs per image (a crop box drawn per image, torchvision's crop-and-resize
kernel, then stack); everything after it runs once per batch with the ops of data/transforms/gpu.py, plus a batched
RandAugment and a jitter grouped by op here. recipes.py declares the split-file recipes once; ops.py builds them
from these ops (`split_file_gpu_transforms`) and from torchvision's (`imagefolder_transforms`, on PIL images).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ecl_lightning.data.transforms.gpu import (
    ColorJitter,
    TorchvisionPolicy,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    by_group,
    first_valid,
    randint_below,
    sample_boxes,
    uniform,
)


def sample_crop_boxes(
    heights: Tensor, widths: Tensor, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(top, left, height, width), int64 (B,), of one v2.RandomResizedCrop box per image of size heights x widths:
    torchvision's ten tries (area uniform in scale x image area, log aspect uniform in log ratio), then its central
    fallback crop with the aspect clamped into ratio; drawn on the CPU, no loop over images."""
    n = len(heights)
    h_img, w_img = heights[:, None].double(), widths[:, None].double()
    w, h = sample_boxes(n, h_img, w_img, scale, ratio, heights.device)  # RRC: w from area * aspect
    valid = (w > 0) & (w <= w_img) & (h > 0) & (h <= h_img)
    h, w = (t.long() for t in first_valid(valid, h, w))
    top, left = randint_below(heights - h + 1), randint_below(widths - w + 1)
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
        factors = [uniform((n,), max(0.0, 1.0 - v), 1.0 + v, dev) for v in spreads]
        ops = [adjust_brightness, adjust_contrast, adjust_saturation]
        if self.hue > 0:
            factors.append(uniform((n,), -self.hue, self.hue, dev))
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
