"""Callbacks: a ModelCheckpoint whose last.ckpt is the latest state and whose best-checkpoint tracking survives a
resume into another directory; W&B views of a test run (per-class table and bar chart, confusion matrix)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import callbacks
from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger("ecl_lightning")


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, restoring the best score and path and the top-k state from a checkpoint written
    in another directory too (Lightning restores them only for the same dirpath, so "best" silently restarted when a
    run resumed into a new run directory).

    The top-k files that still exist are copied into this run's checkpoint directory, so the run directory holds the
    checkpoint it tests and this run never deletes the other run's files; a top-k file that is gone is dropped from
    the tracking, with a warning.
    """

    # Lightning >= 2.6 writes last.ckpt only when it writes a top-k file: with a monitor, last.ckpt then held the
    # best epoch, and a resume from `last` silently restarted there, losing every epoch after it. Here last.ckpt is
    # also written at the point where Lightning decides on the top-k file (the end of the training epoch, or of the
    # validation when it runs mid-epoch), after that decision; a step already saved is skipped.
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_latest(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_latest(trainer)

    def _save_latest(self, trainer: L.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        source = state_dict.get("dirpath", self.dirpath)
        if self.dirpath is None or source is None or source == self.dirpath:
            return super().load_state_dict(state_dict)
        kept: dict[str, Any] = {}
        for old_path, score in (state_dict.get("best_k_models") or {}).items():
            if not Path(old_path).is_file():
                log.warning("The resumed run's top-k checkpoint %s is gone: it is no longer tracked.", old_path)
                continue
            new_path = os.path.join(self.dirpath, Path(old_path).name)
            _copy_atomically(old_path, new_path)
            kept[new_path] = score
        self.best_k_models = kept
        if kept:
            worst = max if self.mode == "min" else min
            best = min if self.mode == "min" else max
            self.kth_best_model_path = worst(kept, key=kept.get)
            self.kth_value = kept[self.kth_best_model_path]
            self.best_model_path = best(kept, key=kept.get)
            self.best_model_score = kept[self.best_model_path]
            log.info(
                "Resumed the best-checkpoint tracking of %s: best %s = %.4f, copied to %s.",
                source, self.monitor, float(self.best_model_score), self.best_model_path,
            )  # fmt: skip
        elif state_dict.get("best_model_score") is not None:
            log.warning("None of the resumed run's top-k checkpoints exists any more: the best restarts from here.")


def _copy_atomically(source: str, target: str) -> None:
    """Copy via a temporary file and a rename: the target is whole or absent (as AtomicCheckpointIO writes)."""
    if os.path.isfile(target) and os.path.getsize(target) == os.path.getsize(source):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class WandbTestReport(L.Callback):
    """At test end, log to W&B: per-class accuracy as a table and a bar chart (sorted by the evaluated data's training
    counts) for the ensemble and each expert, and the ensemble's confusion matrix (at most `max_confusion_classes`).

    The confusion matrix is counted from the predictions `test_step` returns (no second forward pass) and summed over
    processes, so under DDP it covers the whole test set. Does nothing without a WandbLogger: safe in every config.
    """

    def __init__(self, max_confusion_classes: int = 100) -> None:
        self.max_confusion_classes = max_confusion_classes
        self._confusion: torch.Tensor | None = None

    @staticmethod
    def _wandb(trainer: L.Trainer) -> WandbLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._confusion = None
        if self._wandb(trainer) is not None and pl_module.num_classes <= self.max_confusion_classes:
            n = pl_module.num_classes
            self._confusion = torch.zeros(n, n, dtype=torch.long, device=pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._confusion is None or not outputs:
            return
        n = self._confusion.shape[0]
        self._confusion += torch.bincount(outputs["target"] * n + outputs["preds"], minlength=n * n).view(n, n)

    def on_test_end(self, trainer, pl_module) -> None:
        logger = self._wandb(trainer)
        if logger is None:
            return
        confusion = self._confusion
        if confusion is not None and trainer.world_size > 1:  # every process takes part, before rank 0 goes on
            confusion = trainer.strategy.reduce(confusion, reduce_op="sum")
        if not trainer.is_global_zero:
            return
        import wandb

        counts = getattr(trainer.datamodule, "class_counts", None) or pl_module.hparams.get("class_counts")
        counts = list(counts or [0] * pl_module.num_classes)
        heads = list(pl_module.test_per_class)
        order = sorted(range(len(counts)), key=lambda c: -counts[c])
        names = pl_module.hparams.get("class_names") or [str(c) for c in range(len(counts))]
        rows = [[names[c], counts[c], *[pl_module.test_per_class[h][c] for h in heads]] for c in order]
        table = wandb.Table(columns=["class", "train_count", *[f"acc_{h}" for h in heads]], data=rows)
        log = {
            "test/per_class": table,
            "test/per_class_acc": wandb.plot.bar(
                table, "class", "acc_ensemble", title="Per-class test accuracy (classes sorted by training count)"
            ),
        }
        if confusion is not None and int(confusion.sum()) > 0:
            y_true, preds = confusion_pairs(confusion.cpu())
            log["test/confusion_matrix"] = wandb.plot.confusion_matrix(
                y_true=y_true, preds=preds, class_names=pl_module.hparams.get("class_names")
            )
        logger.experiment.log(log)


def confusion_pairs(confusion: torch.Tensor) -> tuple[list[int], list[int]]:
    """(targets, predictions), one pair per counted sample, from a [C, C] count matrix (rows: target)."""
    n = confusion.shape[0]
    cells = torch.arange(n * n).repeat_interleave(confusion.flatten())
    return (cells // n).tolist(), (cells % n).tolist()
