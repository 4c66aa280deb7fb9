"""The batched ops of the device path (`data.gpu_augment`): recipes.py declares each recipe once and ops.py builds
its batched pipeline from these ops, one call per batch.

Each op mirrors one torchvision v2 transform of the CPU path and draws its per-sample parameters as tensors on the
batch's device (torch.rand / torch.randint, so the global seed applies) from the same distribution; no Python loop
runs over samples. Geometric ops and AutoAugment work on uint8 like the CPU path; the SimCLR colour ops work on
float in [0, 1] (the CPU path rounds to uint8 after each op; here nothing is rounded). An op's `input_dtype` (none:
any) is the dtype it needs: the pipeline builder puts ToFloat or ToUint8 in front of it where the batch has the other.

Over 300 lines on purpose: one small function per torchvision op it mirrors.
Kept rather than Kornia's augmentation module: Kornia draws AutoAugment's sub-policy and ColorJitter's order once per
batch, has no Cutout, and is 2.6-5x slower on Fashion-MNIST's views (docs/performance.md, bench/bench_augment_libs.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as TF
from torchvision.transforms import v2


def uniform(shape: tuple[int, ...], low: float, high: float, device: torch.device) -> Tensor:
    """Uniform floats in [low, high) of the given shape."""
    return torch.rand(shape, device=device) * (high - low) + low


def randint_below(high: Tensor) -> Tensor:
    """Uniform integers in [0, high) element-wise, for an integer tensor high >= 1."""
    return (torch.rand(high.shape, device=high.device) * high).long().clamp_max(high - 1)


def _bcast(t: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1), to combine a per-sample value with a (B, C, H, W) batch."""
    return t.view(-1, 1, 1, 1)


def _box_mask(top: Tensor, left: Tensor, bottom: Tensor, right: Tensor, height: int, width: int) -> Tensor:
    """(B, 1, H, W) bool: True inside rows [top, bottom) and columns [left, right) of each sample."""
    rows = torch.arange(height, device=top.device)
    cols = torch.arange(width, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def first_valid(valid: Tensor, *values: Tensor) -> tuple[Tensor, ...]:
    """Per row, the values at the first True column of `valid` (B, tries): torchvision's "10 tries" loops."""
    first = valid.int().argmax(1, keepdim=True)  # argmax returns the first maximum
    return tuple(v.gather(1, first).squeeze(1) for v in values)


def sample_boxes(
    n: int,
    height: int | Tensor,
    width: int | Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Ten tries per sample of (sqrt(area * aspect), sqrt(area / aspect)), rounded, with RandomResizedCrop's and
    RandomErasing's draws: area uniform in scale x image area, log aspect uniform in log ratio (height and width: one
    size for the batch, or (B, 1) tensors, one per image)."""
    area = height * width * uniform((n, 10), scale[0], scale[1], device)
    aspect = torch.exp(uniform((n, 10), math.log(ratio[0]), math.log(ratio[1]), device))
    return torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))


def _gray(x: Tensor) -> Tensor:
    """(B, 1, H, W) luma of an RGB float batch, with torchvision's weights."""
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    delta = maxc - minc
    flat = delta == 0  # grey pixels: hue and saturation 0 (and no division by zero)
    s = delta / torch.where(flat, torch.ones_like(maxc), maxc)
    d = torch.where(flat, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = (h / 6.0 + 1.0).fmod(1.0)
    return torch.stack((h, s, maxc), 1)


_HSV_SELECT = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])  # (v, p, q, t) -> r, g, b


def _hsv_to_rgb(x: Tensor) -> Tensor:
    h, s, v = x.unbind(1)
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    select = _HSV_SELECT.to(x.device)[:, i.long().remainder(6)].movedim(0, 1)  # (B, 3, H, W)
    return torch.stack((v, p, q, t), 1).gather(1, select)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """F.adjust_brightness on an RGB float batch with one factor per sample (B,)."""
    return (x * _bcast(factor)).clamp(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """F.adjust_contrast per sample: blend with the image's mean luma."""
    f = _bcast(factor)
    return (f * x + (1 - f) * _gray(x).mean((1, 2, 3), keepdim=True)).clamp(0.0, 1.0)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """F.adjust_saturation per sample: blend with the luma image."""
    f = _bcast(factor)
    return (f * x + (1 - f) * _gray(x)).clamp(0.0, 1.0)


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """F.adjust_hue per sample: shift the HSV hue by factor (in turns)."""
    h, s, v = _rgb_to_hsv(x).unbind(1)
    return _hsv_to_rgb(torch.stack(((h + factor[:, None, None]).remainder(1.0), s, v), 1))


def _gather_window(x: Tensor, top: Tensor, left: Tensor, height: int, width: int) -> Tensor:
    """x[b, :, top_b : top_b + height, left_b : left_b + width] for every sample b."""
    n, c, _, w = x.shape
    rows = top[:, None] + torch.arange(height, device=x.device)
    cols = left[:, None] + torch.arange(width, device=x.device)
    x = x.gather(2, rows[:, None, :, None].expand(n, c, height, w))
    return x.gather(3, cols[:, None, None, :].expand(n, c, height, width))


def resized_crop(x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor, size: int) -> Tensor:
    """F.resized_crop (bilinear) of a float batch, one box per sample (B,): separable, rows then columns."""
    n, c, _, w = x.shape
    r0, r1, wy = _bilinear_taps(top, height, size)
    c0, c1, wx = _bilinear_taps(left, width, size)

    def rows(idx: Tensor) -> Tensor:
        return x.gather(2, idx[:, None, :, None].expand(n, c, size, w))

    xr = rows(r0) * (1 - wy)[:, None, :, None] + rows(r1) * wy[:, None, :, None]

    def cols(idx: Tensor) -> Tensor:
        return xr.gather(3, idx[:, None, None, :].expand(n, c, size, size))

    return cols(c0) * (1 - wx)[:, None, None, :] + cols(c1) * wx[:, None, None, :]


def _bilinear_taps(start: Tensor, length: Tensor, out: int) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices (i0, i1) and weight of i1 resizing [start, start + length) to `out` samples (B, out).

    F.interpolate's rule (align_corners=False): src = (o + 0.5) * length / out - 0.5, clamped at 0 and at the
    last pixel of the crop, so a crop never reads outside itself (as crop-then-resize on the CPU path).
    """
    o = torch.arange(out, device=start.device) + 0.5
    src = (o * (length[:, None].float() / out) - 0.5).clamp_min(0.0)
    i0 = src.floor()
    weight = src - i0
    i0 = i0.long()
    i1 = torch.minimum(i0 + 1, length[:, None] - 1)
    return start[:, None] + i0, start[:, None] + i1, weight


class RandomCrop(nn.Module):
    """v2.RandomCrop(size, padding): zero-pad, then a size x size window at a uniform offset per sample."""

    def __init__(self, size: int, padding: int) -> None:
        super().__init__()
        self.size, self.padding = size, padding

    def forward(self, x: Tensor) -> Tensor:
        x = TF.pad(x, [self.padding] * 4)
        n, _, h, w = x.shape
        top = torch.randint(0, h - self.size + 1, (n,), device=x.device)
        left = torch.randint(0, w - self.size + 1, (n,), device=x.device)
        return _gather_window(x, top, left, self.size, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, padding={self.padding}"


class RandomHorizontalFlip(nn.Module):
    """v2.RandomHorizontalFlip(p): each sample mirrored with probability p."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(_bcast(flip), x.flip(-1), x)


class RandomResizedCrop(nn.Module):
    """v2.RandomResizedCrop(size, scale, ratio) on a float batch: torchvision's box sampling, bilinear resize."""

    input_dtype = torch.float32

    def __init__(
        self, size: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
    ) -> None:
        super().__init__()
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)

    def forward(self, x: Tensor) -> Tensor:
        n, _, height, width = x.shape
        dev = x.device
        w, h = sample_boxes(n, height, width, self.scale, self.ratio, dev)  # RRC: w from area * aspect
        valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        h, w = (t.long() for t in first_valid(valid, h, w))
        top, left = randint_below(height - h + 1), randint_below(width - w + 1)
        # No valid try in ten: torchvision's fallback, a central crop with the ratio clamped into range.
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            fw, fh = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            fw, fh = int(round(height * max(self.ratio))), height
        else:
            fw, fh = width, height
        fallback = ~valid.any(1)
        h, w = h.masked_fill(fallback, fh), w.masked_fill(fallback, fw)
        top, left = top.masked_fill(fallback, (height - fh) // 2), left.masked_fill(fallback, (width - fw) // 2)
        return resized_crop(x, top, left, h, w, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}"


class ColorJitter(nn.Module):
    """v2.RandomApply([v2.ColorJitter(b, c, s, h)], p) on an RGB float batch: per-sample factors and order."""

    input_dtype = torch.float32

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float = 1.0) -> None:
        super().__init__()
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p

    def forward(self, x: Tensor) -> Tensor:
        n, dev = x.shape[0], x.device

        def factor(spread: float) -> Tensor:
            return uniform((n,), max(0.0, 1.0 - spread), 1.0 + spread, dev)

        ops = (
            (adjust_brightness, factor(self.brightness)),
            (adjust_contrast, factor(self.contrast)),
            (adjust_saturation, factor(self.saturation)),
            (adjust_hue, uniform((n,), -self.hue, self.hue, dev)),
        )
        # ColorJitter applies its four ops in a random order (torch.randperm(4)); here one order per sample: at each
        # position every op is computed for the batch and each sample keeps the one its order names.
        order = torch.rand(n, 4, device=dev).argsort(1)
        out = x
        for k in range(4):
            step = _bcast(order[:, k])
            out = sum(torch.where(step == i, fn(out, f), 0.0) for i, (fn, f) in enumerate(ops))
        apply = torch.rand(n, device=dev) < self.p
        return torch.where(_bcast(apply), out, x)

    def extra_repr(self) -> str:
        return f"brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, " + (
            f"hue={self.hue}, p={self.p}"
        )


class RandomGrayscale(nn.Module):
    """v2.RandomGrayscale(p) on an RGB float batch."""

    input_dtype = torch.float32

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        grey = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(_bcast(grey), _gray(x).expand_as(x), x)


class GaussianBlur(nn.Module):
    """v2.RandomApply([v2.GaussianBlur(k, sigma)], p) on a float batch: sigma uniform per sample, reflect padding."""

    input_dtype = torch.float32

    def __init__(self, kernel_size: int, sigma: tuple[float, float], p: float = 1.0) -> None:
        super().__init__()
        self.kernel_size, self.sigma, self.p = kernel_size, tuple(sigma), p

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        k = self.kernel_size
        sigma = uniform((n,), self.sigma[0], self.sigma[1], x.device)
        # torchvision's _get_gaussian_kernel1d: softmax(-(t / sigma)^2) on t in linspace(+-(k-1)/(2 sqrt 2)).
        lim = (k - 1) / (2.0 * math.sqrt(2.0))
        t = torch.linspace(-lim, lim, k, device=x.device)
        k1 = torch.softmax(-((t / sigma[:, None]) ** 2), dim=1)  # (n, k)
        k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, 0)[:, None]  # (n * c, 1, k, k)
        padded = TF.pad(x.reshape(1, n * c, h, w), [k // 2] * 4, mode="reflect")
        blurred = TF.conv2d(padded, k2, groups=n * c).reshape(n, c, h, w)
        apply = torch.rand(n, device=x.device) < self.p
        return torch.where(_bcast(apply), blurred, x)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}, p={self.p}"


def by_group(x: Tensor, key: Tensor, num_keys: int, fn) -> Tensor:
    """fn(k, the samples of `x` whose key is k), once per non-empty group in key order; results back in batch order.
    One sort; the group sizes are the only host sync."""
    order = key.argsort()
    sizes = torch.bincount(key, minlength=num_keys).tolist()
    out = [fn(k, group) for k, group in enumerate(x[order].split(sizes)) if len(group)]
    return torch.empty_like(x).index_copy_(0, order, torch.cat(out))


class TorchvisionPolicy(nn.Module):
    """Base of the batched AutoAugment / RandAugment: `reference` is torchvision's transform, whose op kernels,
    interpolation and fill `apply_op` uses, so the batched and the CPU paths apply the same ops."""

    reference: v2.AutoAugment | v2.RandAugment
    input_dtype = torch.uint8

    def apply_op(self, x: Tensor, name: str, magnitude: float) -> Tensor:
        """One op with a fixed magnitude on a uint8 batch, exactly as the CPU transform applies it."""
        ref = self.reference
        return ref._apply_image_or_video_transform(x, name, magnitude, interpolation=ref.interpolation, fill=ref._fill)


class AutoAugment(TorchvisionPolicy):
    """v2.AutoAugment(policy) on a uint8 batch, one sub-policy drawn per sample.

    Samples are grouped by sub-policy (one sort; the group sizes are the only host sync) and each op of a sub-policy
    runs once on its group through torchvision's own op kernels, which treat every image of a batch separately;
    the op probability and the sign of signed magnitudes are drawn per sample. The policy table, magnitudes and
    kernels come from the CPU transform itself (private attributes of torchvision's AutoAugment, checked by the
    tests), so both paths apply the same ops.
    """

    def __init__(self, policy: v2.AutoAugmentPolicy = v2.AutoAugmentPolicy.CIFAR10) -> None:
        super().__init__()
        self.reference = v2.AutoAugment(policy)

    @property
    def sub_policies(self) -> list:
        return self.reference._policies

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.uint8:
            raise TypeError(f"AutoAugment expects a uint8 batch, got {x.dtype}")
        n, _, height, width = x.shape
        policies = self.sub_policies

        def run(k: int, group: Tensor) -> Tensor:
            m = len(group)
            for name, probability, magnitude_idx in policies[k]:
                if probability == 0:
                    continue
                magnitudes_fn, signed = self.reference._AUGMENTATION_SPACE[name]
                magnitudes = magnitudes_fn(10, height, width)
                magnitude = float(magnitudes[magnitude_idx]) if magnitudes is not None else 0.0
                new = self.apply_op(group, name, magnitude)
                if signed and magnitude != 0:
                    negative = torch.rand(m, device=x.device) <= 0.5
                    new = torch.where(_bcast(negative), self.apply_op(group, name, -magnitude), new)
                applied = torch.rand(m, device=x.device) <= probability
                group = torch.where(_bcast(applied), new, group)
            return group

        choice = torch.randint(len(policies), (n,), device=x.device)
        return by_group(x, choice, len(policies), run)

    def extra_repr(self) -> str:
        return f"policy={self.reference.policy}"


class ToFloat(nn.Module):
    """v2.ToDtype(torch.float32, scale=True) for uint8: values / 255."""

    def forward(self, x: Tensor) -> Tensor:
        return x.float().mul_(1.0 / 255) if x.dtype == torch.uint8 else x


class ToUint8(nn.Module):
    """A float batch in [0, 1] -> uint8, rounded (for the ops that need uint8 after the float colour ops)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mul(255).round_().to(torch.uint8)


class Normalize(nn.Module):
    """v2.Normalize(mean, std) on a float batch."""

    input_dtype = torch.float32

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class RandomErasing(nn.Module):
    """v2.RandomErasing(p, scale, ratio, value): a box of torchvision's distribution set to `value` per sample."""

    def __init__(
        self,
        p: float = 0.5,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float = 0.0,
    ) -> None:
        super().__init__()
        self.p, self.scale, self.ratio, self.value = p, tuple(scale), tuple(ratio), value

    def forward(self, x: Tensor) -> Tensor:
        n, _, height, width = x.shape
        h, w = sample_boxes(n, height, width, self.scale, self.ratio, x.device)  # erasing: h from area * aspect
        valid = (h < height) & (w < width)
        h, w = (t.long() for t in first_valid(valid, h, w))
        top, left = randint_below(height - h + 1), randint_below(width - w + 1)
        # No valid try in ten: torchvision leaves the image as it is.
        erase = valid.any(1) & (torch.rand(n, device=x.device) < self.p)
        mask = _box_mask(top, left, top + h, left + w, height, width) & _bcast(erase)
        return x.masked_fill(mask, self.value)

    def extra_repr(self) -> str:
        return f"p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value}"


class Cutout(nn.Module):
    """Zero a size x size square at a uniform random centre, clipped at the border (DeVries & Taylor), in a (C, H, W)
    image (the CPU path) or per sample of a (B, C, H, W) batch (the batched path)."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        batch = x if x.dim() == 4 else x[None]
        n, _, h, w = batch.shape
        cy = torch.randint(h, (n,), device=x.device)
        cx = torch.randint(w, (n,), device=x.device)
        half, rest = self.size // 2, self.size - self.size // 2
        mask = _box_mask(cy - half, cx - half, cy + rest, cx + rest, h, w)  # out-of-image bounds clip themselves
        out = batch.masked_fill(mask, 0.0)
        return out if x.dim() == 4 else out[0]

    def extra_repr(self) -> str:
        return f"size={self.size}"


class TwoViewAugment(nn.Module):
    """(view 1, view 2) of a uint8 (B, C, H, W) batch, outside autograd and autocast."""

    def __init__(self, view1: nn.Module, view2: nn.Module) -> None:
        super().__init__()
        self.view1, self.view2 = view1, view2

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        buffer = next(self.buffers(), None)
        if buffer is not None and buffer.device != images.device:
            self.to(images.device)  # the datamodule owns this module, so Lightning does not move it
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            return self.view1(images), self.view2(images)
