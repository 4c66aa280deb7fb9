"""What a trained model expects as input (channels, size, normalisation) and the one eval transform built from it.

Every DataModule says what its eval images look like (`input_spec()`); prediction and export read it from the run's
data config, so a user's image of any size and mode goes through the same resize, crop and normalisation as the
test images did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torchvision.transforms import v2


@dataclass(frozen=True)
class InputSpec:
    """Eval preprocessing: PIL mode from `channels` (1: L, 3: RGB), resize the shorter side to `resize_size`,
    centre-crop `image_size`, scale to [0, 1], then (x - mean) / std per channel."""

    channels: int
    image_size: int
    resize_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean {self.mean} and std {self.std} need {self.channels} value(s) each")
        if self.resize_size < self.image_size:
            raise ValueError(f"resize_size={self.resize_size} is smaller than image_size={self.image_size}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        return cls(int(d["channels"]), int(d["image_size"]), int(d["resize_size"]), tuple(d["mean"]), tuple(d["std"]))


def to_normalised(spec: InputSpec) -> list[nn.Module]:
    """PIL or uint8 tensor -> float tensor scaled to [0, 1] and normalised."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std), v2.ToPureTensor()]


def eval_transform(spec: InputSpec) -> nn.Module:
    """PIL image (already in the spec's mode) -> normalised float tensor (channels, image_size, image_size)."""
    return v2.Compose(
        [v2.Resize(spec.resize_size, antialias=True), v2.CenterCrop(spec.image_size), *to_normalised(spec)]
    )
