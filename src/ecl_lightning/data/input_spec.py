"""What a trained model expects as input: channels, size and normalisation (`InputSpec`).

Every DataModule says what its eval images look like (`input_spec()`); prediction and export read it from the run's
data config and build the eval transform from it (transforms/recipes.py `eval_transform`), so a user's image of any
size and mode goes through the same resize, crop and normalisation as the test images did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
