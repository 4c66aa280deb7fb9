"""CIFAR's pickle batches (torchvision's extracted `cifar-10-batches-py` / `cifar-100-python` files), read by our
own loader that checks keys, shapes and ranges."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ecl_lightning.data.errors import DatasetFormatError


def read_cifar_batch(path: str | Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR pickle batch into (uint8 (N, 3, 32, 32), int64 (N,)); keys may be bytes or str."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
    except Exception as err:  # unpickling garbage raises almost anything (UnpicklingError, EOFError, ValueError...)
        raise DatasetFormatError(f"{path}: not a readable CIFAR pickle batch ({type(err).__name__}: {err})") from err
    if not isinstance(entry, dict):
        raise DatasetFormatError(f"{path}: expected a dict, found {type(entry).__name__}")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    for key in ("data", label_key):
        if key not in entry:
            raise DatasetFormatError(f"{path}: key '{key}' missing (keys: {sorted(entry)})")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFormatError(f"{path}: 'data' has shape {data.shape}, expected (N, 3072)")
    if len(data) != len(labels):
        raise DatasetFormatError(f"{path}: {len(data)} images but {len(labels)} labels in '{label_key}'")
    if data.dtype != np.uint8:
        if data.size and (data.min() < 0 or data.max() > 255):
            raise DatasetFormatError(f"{path}: pixel values outside 0..255")
        data = data.astype(np.uint8)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetFormatError(f"{path}: label {labels.max()} out of range 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels  # rows are channel-major (R plane, G plane, B plane)
