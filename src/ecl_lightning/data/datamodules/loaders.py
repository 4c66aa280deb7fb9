"""The DataLoader of every DataModule (`make_loader`, used by base.py and the evaluation protocols), and the unpadded
distributed sampler that keeps DDP evaluation exact."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import TYPE_CHECKING

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
