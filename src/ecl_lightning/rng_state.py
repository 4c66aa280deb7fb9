"""RNG states in checkpoints, so a resumed fit draws the same shuffling, augmentations and worker seeds as one that
was never stopped (Lightning checkpoints weights, optimiser, scheduler and loop state, but not the RNGs)."""

from __future__ import annotations

import logging
import random

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger("ecl_lightning")


def gather_rng_states() -> list[dict]:
    """Every process's RNG states, in rank order (every rank builds the checkpoint; rank 0 writes it)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        states: list = [None] * dist.get_world_size()
        dist.all_gather_object(states, rng_states())
        return states
    return [rng_states()]


def restore_rng_states(trainer: L.Trainer | None, states: list[dict] | None) -> None:
    """When fit resumes, put back this process's RNG states of the (epoch-end) checkpoint.

    Called from the LightningModule's on_load_checkpoint, at once: the next draw must be the train loader's, and
    Lightning makes that iterator (drawing its loader seed) soon after, in configure_optimizers
    (estimated_stepping_batches); the sanity check runs with the RNG isolated. Exact with num_workers=0 or
    non-persistent workers; persistent workers keep RNG streams that no checkpoint holds.
    """
    if trainer is None or trainer.state.fn != TrainerFn.FITTING or not states:
        return  # load_from_checkpoint or a test: no training to continue
    if len(states) != trainer.world_size:
        log.warning(
            "The checkpoint holds RNG states of %d process(es), this run has %d: the data order and "
            "augmentations after the resume differ from those of an uninterrupted run.",
            len(states), trainer.world_size,
        )  # fmt: skip
        return
    set_rng_states(states[trainer.global_rank])


def rng_states() -> dict:
    """This process's Python, NumPy, torch CPU and CUDA RNG states, in types that `weights_only` loading accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict) -> None:
    """Restore what `rng_states` returned."""
    random.setstate(states["python"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
