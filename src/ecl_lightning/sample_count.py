"""The evaluated-sample check: an evaluation of a whole split must see each of its samples exactly once."""

from __future__ import annotations

import lightning as L


def check_num_samples(trainer: L.Trainer, stage: str, num_samples: int) -> None:
    """Raise if an evaluation of a whole split saw another number of samples than the split holds.

    A padded distributed sampler counts some samples twice, a missing one every sample once per process: the
    metrics would be silently off. Skipped where fewer batches are run on purpose (sanity check, fast_dev_run,
    an integer or fractional limit_{val,test}_batches).
    """
    limit = trainer.limit_test_batches if stage == "test" else trainer.limit_val_batches
    if trainer.sanity_checking or trainer.fast_dev_run or not (isinstance(limit, float) and limit == 1.0):
        return
    loaders = trainer.test_dataloaders if stage == "test" else trainer.val_dataloaders
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    datasets = [getattr(loader, "dataset", None) for loader in loaders]
    if not datasets or not all(hasattr(d, "__len__") for d in datasets):
        return  # an iterable dataset: nothing to compare with
    expected = sum(len(d) for d in datasets)
    if num_samples != expected:
        raise RuntimeError(
            f"{stage}: {num_samples} samples were evaluated over {trainer.world_size} process(es), but the "
            f"{stage} split holds {expected}. Each sample must be evaluated exactly once: under DDP the "
            f"{stage} loader needs an unpadded distributed sampler "
            "(ecl_lightning.data.datamodules.loaders.make_loader)."
        )
