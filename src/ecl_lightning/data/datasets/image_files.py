"""Image files decoded with PIL: one file (`load_image`, also for predict's inputs) and a dataset of files under a
root, decoded when an item is read (split-file benchmarks, image folders)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ecl_lightning.data.datasets.views import ImageDataset
from ecl_lightning.data.errors import DatasetFormatError


def pil_mode(channels: int) -> str:
    return "L" if channels == 1 else "RGB"


def load_image(path: str | Path, channels: int) -> Image.Image:
    """Decode an image file into a grey (channels 1) or RGB PIL image; a failure is a DatasetFormatError naming it."""
    try:
        with Image.open(path) as img:
            return img.convert(pil_mode(channels))
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DatasetFormatError(f"cannot decode image {path}: {type(err).__name__}: {err}") from err


def undecodable(root: str | Path, files: Sequence[str], channels: int, workers: int = 1) -> list[tuple[int, str]]:
    """(position, "<error type>: <message>") of each file (relative to root) that PIL cannot decode; threads, since
    PIL decodes without the GIL."""

    def check(i: int) -> tuple[int, str] | None:
        try:
            load_image(os.path.join(root, files[i]), channels)
        except DatasetFormatError as err:
            return i, f"{type(err.__cause__).__name__}: {err.__cause__}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [r for r in pool.map(check, range(len(files))) if r is not None]


class ImageFileDataset(ImageDataset):
    """(x, y), or (x1, x2, y) with `TwoViews`, from image files under `root`, decoded as grey (channels 1) or RGB
    when an item is read; a file that cannot be decoded raises a DatasetFormatError naming it, then `fix`."""

    def __init__(
        self,
        root: str | Path,
        files: list[str],
        targets: list[int],
        transform: nn.Module | None = None,
        channels: int = 3,
        fix: str = "Replace or remove the file; data.verify_images=true checks every image before training",
    ) -> None:
        self.root = Path(root)
        # One numpy array of UTF-8 bytes, not a list of str: forked loader workers would touch every str's refcount
        # and so copy the whole list (GBs at 437k paths x 8 workers); bytes also take a quarter of numpy's '<U'.
        self._files = np.array([f.encode() for f in files], dtype=np.bytes_)
        self.targets = torch.as_tensor(targets, dtype=torch.int64)
        self.transform = transform
        self.channels = channels
        self.fix = fix

    def file(self, i: int) -> str:
        """The i-th image path, relative to `root`."""
        return self._files[i].decode()

    @property
    def files(self) -> list[str]:
        """All image paths, relative to `root` (builds a list: for inspection, not for the loader)."""
        return [f.decode() for f in self._files]

    def load(self, i: int) -> Image.Image:
        try:
            return load_image(self.root / self.file(i), self.channels)
        except DatasetFormatError as err:
            raise DatasetFormatError(f"{err}. {self.fix}") from err.__cause__
