"""The DataLoaders of every DataModule (`DataLoadersMixin`), and the unpadded distributed sampler that keeps DDP
evaluation exact."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import DataLoader, Dataset, DistributedSampler

if TYPE_CHECKING:
    import lightning as L


class UnpaddedDistributedSampler(DistributedSampler):
    """Process `rank` reads indices rank, rank + world_size, ... in order: every sample exactly once over all ranks.

    torch's DistributedSampler pads the index list to a multiple of the world size, so a padded evaluation counts
    some samples twice (5 images on 2 processes: 6 evaluated). Here ranks may get one sample (and so one batch)
    fewer; that is safe for evaluation, where nothing communicates per batch (the metrics sum their states once, at
    compute). Not for training: DDP's gradient all-reduce needs the same number of steps on every rank.
    Subclassing DistributedSampler keeps Lightning from replacing it with its padded one.
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        n = len(dataset)
        if 0 < n < num_replicas:
            # A rank without a batch would skip the first forward of the evaluation, in which DDP broadcasts buffers
            # from rank 0 during fit: rank 0 would wait forever.
            raise ValueError(
                f"an evaluation split of {n} sample(s) cannot be shared by {num_replicas} processes (each needs at "
                "least one); use fewer devices or a larger split"
            )
        self.total_size = n
        self.num_samples = len(range(rank, n, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    num_workers: int,
    pin_memory: bool,
    persistent_workers: bool,
    trainer: L.Trainer | None = None,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """Train: shuffled, full batches only (Lightning adds its DistributedSampler under DDP). Eval: in file order;
    under DDP (`trainer.world_size > 1`) each process reads its unpadded share, so no sample is counted twice."""
    distributed_eval = not train and trainer is not None and trainer.world_size > 1
    sampler = UnpaddedDistributedSampler(dataset, trainer.world_size, trainer.global_rank) if distributed_eval else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        collate_fn=collate_fn,
    )


class DataLoadersMixin:
    """train/val/test_dataloader for a LightningDataModule that, after `setup()`, holds `train_set`, `val_set`
    (None when the dataset has no val split) and `test_set`, and the attributes `batch_size`, `eval_batch_size`,
    `num_workers`, `pin_memory`, `persistent_workers`; and the training class counts every DataModule reports."""

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
