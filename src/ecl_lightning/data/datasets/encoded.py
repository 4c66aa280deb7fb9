"""`data.decode=bytes`: loader workers read the encoded image files, the training device decodes them in batches.

A worker only reads a file (no decoding, no augmentation) and a batch travels as one packed uint8 tensor with
offsets. `decode_batch` then decodes the JPEGs with one `torchvision.io.decode_jpeg` call (libjpeg-turbo on the CPU,
nvJPEG on CUDA, which decodes a list in one batched call) and PNG, GIF and WEBP files one by one with
`decode_image`; every image comes out RGB (grey and CMYK JPEGs included), as PIL's `convert("RGB")` gives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from ecl_lightning.data.errors import DatasetFormatError

DECODE_CHOICES = ("pil", "bytes")

# torchvision.io decodes these; the header check before training (data.check_headers) lets any image PIL reads pass.
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"))


def image_format(head: bytes) -> str | None:
    """JPEG, PNG, GIF or WEBP from a file's first 12 bytes; None for any other content."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


class EncodedBatch(NamedTuple):
    """A batch of encoded image files: file i is data[offsets[i]:offsets[i + 1]].

    `train` says what the batch becomes once decoded: two training views, or the eval crop.
    """

    data: Tensor  # uint8 (total bytes,)
    offsets: Tensor  # int64 (B + 1,)
    jpeg: Tensor  # bool (B,): JPEG (one batched decode) or PNG / GIF / WEBP (decoded one by one)
    targets: Tensor  # int64 (B,)
    files: tuple[str, ...]  # the image paths, for error messages
    train: bool


class EncodedImageDataset(Dataset):
    """(file bytes as uint8, is JPEG, y, path) per image of an `ImageFileDataset`'s list; `collate_fn` packs a batch."""

    def __init__(self, root: str | Path, files: np.ndarray, targets: Tensor, train: bool) -> None:
        self.root, self._files, self.targets, self.train = Path(root), files, targets, train

    @classmethod
    def of(cls, dataset, train: bool) -> EncodedImageDataset:
        """The same images and labels as `dataset` (an ImageFileDataset; its path array is shared, not copied)."""
        return cls(dataset.root, dataset._files, dataset.targets, train)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, bool, Tensor, str]:
        path = str(self.root / self._files[i].decode())
        with open(path, "rb") as f:
            data = torch.empty(os.fstat(f.fileno()).st_size, dtype=torch.uint8)
            f.readinto(data.numpy())
        fmt = image_format(data[:12].numpy().tobytes())
        if fmt is None:
            raise DatasetFormatError(
                f"cannot decode image {path} with data.decode=bytes: torchvision.io reads JPEG, PNG, GIF and WEBP, "
                "and this file is none of them. Convert it, remove its line from the split file, or use data.decode=pil"
            )
        return data, fmt == "JPEG", self.targets[i], path

    def collate_fn(self, items: list[tuple[Tensor, bool, Tensor, str]]) -> EncodedBatch:
        data, jpeg, targets, files = zip(*items, strict=True)
        offsets = torch.tensor([0, *(len(d) for d in data)], dtype=torch.int64).cumsum(0)
        return EncodedBatch(torch.cat(data), offsets, torch.tensor(jpeg), torch.stack(targets), files, self.train)


def _undecodable(err: Exception, file: str) -> DatasetFormatError:
    return DatasetFormatError(
        f"cannot decode image {file} with torchvision.io: {err}. Replace the file or remove its line from the split "
        "file (data.decode=pil decodes with PIL; data.verify_images=true decodes every image before training)"
    )


def decode_batch(batch: EncodedBatch, device: torch.device | str = "cpu") -> list[Tensor]:
    """The batch's images as uint8 RGB (3, H_i, W_i) tensors on `device`, in batch order."""
    device = torch.device(device)
    data = batch.data.cpu()  # torchvision.io reads encoded bytes from CPU memory, whatever the output device
    chunks = data.split(batch.offsets.diff().tolist())
    jpeg = batch.jpeg.tolist()
    images: list[Tensor | None] = [None] * len(chunks)
    at = [i for i, is_jpeg in enumerate(jpeg) if is_jpeg]
    if at:
        try:
            decoded = decode_jpeg([chunks[i] for i in at], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            for i in at:  # name the file: decode them one by one on the CPU
                try:
                    decode_jpeg(chunks[i], mode=ImageReadMode.RGB)
                except RuntimeError as one:
                    raise _undecodable(one, batch.files[i]) from one
            raise  # every file decodes on the CPU: a device error, not a file's
        for i, img in zip(at, decoded, strict=True):
            images[i] = img
    for i, is_jpeg in enumerate(jpeg):
        if not is_jpeg:
            try:
                img = decode_image(chunks[i], mode=ImageReadMode.RGB)
                images[i] = (img[0] if img.ndim == 4 else img).to(device)  # an animated GIF: its first frame, as PIL
            except RuntimeError as err:
                raise _undecodable(err, batch.files[i]) from err
    return images
