"""The common base of every DataModule: the options each takes (a dataclass of config.py, declared once), stored as
attributes, its config keys for validate.py, the training class counts and the three DataLoaders."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from ecl_lightning.config import DataOptions, field_types, parameter_types
from ecl_lightning.data.datamodules.loaders import make_loader


class BaseDataModule(L.LightningDataModule):
    """A DataModule whose `__init__` states only its own parameters and passes `**options` on: the keys of its
    `options_type` dataclass (batch_size, num_workers...), flat beside its own in the config (`data.batch_size`).

    A subclass holds, after `setup()`, `train_set`, `val_set` (None when the dataset has no val split) and `test_set`;
    with the attributes set here, that is what the loaders and `class_counts` read.
    """

    options_type: ClassVar[type[DataOptions]] = DataOptions

    def __init__(self, **options: Any) -> None:
        super().__init__()
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(self.options_type)})
        if unknown:
            valid = sorted(self.config_keys())
            raise TypeError(f"{type(self).__name__} got unknown option(s) {unknown}; valid keys: {valid}")
        values = dataclasses.asdict(self.options_type(**options))  # the defaults filled in
        for key, value in values.items():
            setattr(self, key, value)
        self.eval_batch_size = values["eval_batch_size"] or values["batch_size"]

    @classmethod
    def config_keys(cls) -> dict[str, Any]:
        """{key: annotation} of every key the config group of this DataModule may set: the parameters of its
        `__init__` (its own), then the fields of its `options_type` (validate.py checks `data.*` against them)."""
        own, _ = parameter_types(cls)
        return {**own, **{k: v for k, v in field_types(cls.options_type).items() if k not in own}}

    @property
    def class_counts(self) -> list[int]:
        """Training images per class of the (long-tailed) train set, after any val split (sets up lazily)."""
        self.setup()
        return np.bincount(self.train_set.targets.numpy(), minlength=self.num_classes).tolist()

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        return make_loader(
            dataset,
            batch_size,
            train=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            trainer=self.trainer,
            collate_fn=getattr(dataset, "collate_fn", None),  # a dataset that batches its own way says so
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (x1, x2, y) batches; drop_last keeps every batch full (the MoCo queue needs it)."""
        self.setup()
        if len(self.train_set) < self.batch_size:
            raise ValueError(
                f"the train set has {len(self.train_set)} images, fewer than data.batch_size={self.batch_size}; "
                "with drop_last=True an epoch would be empty"
            )
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader | list:
        """(x, y) batches of the val split; [] when the dataset has none (CIFAR-LT; iNat, whose val is its test)."""
        self.setup()
        if self.val_set is None:
            return []
        return self._loader(self.val_set, self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        """(x, y) batches of the balanced test split."""
        self.setup()
        return self._loader(self.test_set, self.eval_batch_size, train=False)
