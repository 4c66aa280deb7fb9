"""The in-memory DataModule base: uint8 image arrays, LT subset, two-view train set (loaders: base.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ecl_lightning.config import InMemoryOptions
from ecl_lightning.data.datamodules.base import BaseDataModule
from ecl_lightning.data.datasets.array import ImageArrayDataset
from ecl_lightning.data.datasets.views import TwoViews
from ecl_lightning.data.longtail import balanced_holdout_indices, longtail_counts, select_longtail_indices


class InMemoryDataModule(BaseDataModule):
    """Base of the datasets read whole into memory: holds uint8 image arrays + targets, builds the LT subset and the
    two-view train dataset; its options (config.InMemoryOptions) add the long-tail profile, download and gpu_augment.

    Subclasses set `name`, `num_classes`, `has_val` (and `val_per_class`, its images per class, with a val split) and
    implement `_find_files`, `_download`, `_load_arrays`, `transforms`, `_gpu_transforms` and `input_spec` (the rest
    of the LongTailData interface, data/interface.py).

    With `gpu_augment`, the train loader yields (uint8 images, y) and `on_after_batch_transfer` builds the two views
    batched on the device during training, so workers only index and collate.
    """

    options_type = InMemoryOptions
    name: str = "longtail"
    num_classes: int
    in_chans: int = 3
    has_val: bool = False
    val_per_class: int = 0
    default_n_max: int = 500

    def __init__(self, data_dir: str, **options: Any) -> None:
        super().__init__(**options)
        self.data_dir = Path(data_dir).expanduser()
        self.imbalance_factor = float(self.imbalance_factor)
        self.n_max = int(self.n_max) if self.n_max is not None else self.default_n_max
        # Fail on a bad profile at construction, not after loading the data.
        self._counts = longtail_counts(self.n_max, self.num_classes, self.imbalance_factor)
        self._ready = False

    # ---- hooks for subclasses -------------------------------------------------------------------------
    def _find_files(self) -> dict[str, Path]:
        """Locate the dataset files; raise DatasetNotFoundError (listing every place looked) if absent."""
        raise NotImplementedError

    def _download(self) -> None:
        """Fetch the dataset into data_dir (only called when download=True and the files are missing)."""
        raise NotImplementedError

    def _load_arrays(self, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train uint8 (N,C,H,W), train int64 (N,), test uint8 (M,C,H,W), test int64 (M,)) in file order."""
        raise NotImplementedError

    def transforms(self, augment: bool) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(train view 1, train view 2, eval) transforms on uint8 CHW tensors."""
        raise NotImplementedError

    def _gpu_transforms(self, augment: bool) -> nn.Module:
        """The batched train views (data/transforms/gpu.py): uint8 (B, C, H, W) -> (view 1, view 2)."""
        raise NotImplementedError

    # ---- LightningDataModule API ----------------------------------------------------------------------
    def check(self) -> None:
        """Raise DatasetNotFoundError now if the files are missing and download is off (cheap: no loading)."""
        if not self.download:
            self._find_files()

    def prepare_data(self) -> None:
        """Download only if `download` is set and the files are missing."""
        if not self.download:
            return
        try:
            self._find_files()
        except FileNotFoundError:
            self._download()

    def setup(self, stage: str | None = None) -> None:
        """Load all images once and select the long-tail train subset (and the val split); idempotent."""
        if self._ready:
            return
        files = self._find_files()
        train_x, train_y, test_x, test_y = self._load_arrays(files)
        self.files = files
        self.train_indices = select_longtail_indices(train_y, self._counts)
        self.val_indices = (
            balanced_holdout_indices(train_y, self.train_indices, self.val_per_class) if self.has_val else None
        )
        view1, view2, evaluate = self.transforms(self.augment)

        def tensors(x: np.ndarray, y: np.ndarray, idx: np.ndarray | None = None):
            x, y = (x[idx], y[idx]) if idx is not None else (x.copy(), y)  # copy: the reader's buffer is read-only
            return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))

        if self.gpu_augment:  # uint8 images as stored; the views are built on the device (on_after_batch_transfer)
            self.train_set = ImageArrayDataset(*tensors(train_x, train_y, self.train_indices))
            self.gpu_views = self._gpu_transforms(self.augment)
        else:
            self.train_set = ImageArrayDataset(*tensors(train_x, train_y, self.train_indices), TwoViews(view1, view2))
        self.val_set = (
            ImageArrayDataset(*tensors(train_x, train_y, self.val_indices), evaluate) if self.has_val else None
        )
        self.test_set = ImageArrayDataset(*tensors(test_x, test_y), evaluate)
        self._ready = True

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With gpu_augment, a training batch (uint8 x, y) becomes (view 1, view 2, y) on its device; others pass."""
        if self.gpu_augment and self.trainer is not None and self.trainer.training:
            images, targets = batch
            return (*self.gpu_views(images), targets)
        return batch

    def subset_info(self) -> dict:
        """JSON-serialisable record of the subset (saved with the run so it can be reproduced)."""
        self.setup()
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "imbalance_factor": self.imbalance_factor,
            "n_max": self.n_max,
            "class_counts": self.class_counts,
            "train_indices": self.train_indices.tolist(),
            "val_indices": None if self.val_indices is None else self.val_indices.tolist(),
            "files": {key: str(path) for key, path in self.files.items()},
        }
