"""Callbacks: a ModelCheckpoint whose best-checkpoint tracking survives a resume into another directory; W&B views
of a test run (per-class table and bar chart, confusion matrix)."""

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
    run resumed into a new run directory: STYLE pitfall 16).

    The top-k files that still exist are copied into this run's checkpoint directory, so the run directory holds the
    checkpoint it tests and this run never deletes the other run's files; a top-k file that is gone is dropped from
    the tracking, with a warning.
    """

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
    """At test end, log to W&B: per-class accuracy as a table and a bar chart (sorted by training count) for the
    ensemble and each expert, and the ensemble's confusion matrix (when there are at most `max_confusion_classes`).

    Does nothing without a WandbLogger, so it is safe in every config.
    """

    def __init__(self, max_confusion_classes: int = 100) -> None:
        self.max_confusion_classes = max_confusion_classes
        self._preds: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    @staticmethod
    def _wandb(trainer: L.Trainer) -> WandbLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._preds, self._targets = [], []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._wandb(trainer) is None or pl_module.num_classes > self.max_confusion_classes:
            return
        x, y = batch
        with torch.no_grad():
            ensemble, _ = pl_module.predict_logits(x)
        self._preds.append(ensemble.argmax(-1).cpu())
        self._targets.append(y.cpu())

    def on_test_end(self, trainer, pl_module) -> None:
        logger = self._wandb(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        import wandb

        counts = pl_module.hparams.get("class_counts") or [0] * pl_module.num_classes
        heads = list(pl_module.test_per_class)
        order = sorted(range(len(counts)), key=lambda c: -counts[c])
        rows = [[c, counts[c], *[pl_module.test_per_class[h][c] for h in heads]] for c in order]
        table = wandb.Table(columns=["class", "train_count", *[f"acc_{h}" for h in heads]], data=rows)
        log = {
            "test/per_class": table,
            "test/per_class_acc": wandb.plot.bar(
                table, "class", "acc_ensemble", title="Per-class test accuracy (classes sorted by training count)"
            ),
        }
        if self._preds:
            log["test/confusion_matrix"] = wandb.plot.confusion_matrix(
                y_true=torch.cat(self._targets).tolist(), preds=torch.cat(self._preds).tolist()
            )
        logger.experiment.log(log)
