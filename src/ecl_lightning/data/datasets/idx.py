"""The IDX format of (Fashion-)MNIST: a small numpy reader that checks magic number, dims and size."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ecl_lightning.data.errors import DatasetFormatError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x0803: ubyte, 3 dims; 0x0801: ubyte, 1 dim


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read an IDX ubyte file (gzipped or not) into a uint8 array, checking magic number, dims and size."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        with (gzip.open if gzipped else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a cut-off gzip stream an EOFError
        raise DatasetFormatError(f"{path}: cannot read the file ({err}); re-download it") from err
    if len(raw) < 4:
        raise DatasetFormatError(f"{path}: {len(raw)} bytes, too short to be an IDX file")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetFormatError(f"{path}: IDX magic number {magic}, expected {expected_magic}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DatasetFormatError(
            f"{path}: header announces dims {dims} ({size} bytes of data) but the file holds "
            f"{len(raw) - header}; the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
