"""Callbacks: W&B views of a test run (per-class table and bar chart, confusion matrix)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger


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
