"""Loggers: the CSV file appended to across a resume, the W&B run id reused, W&B offline without an API key, and
the W&B run ended with its job."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig, open_dict

log = logging.getLogger("ecl_lightning")


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv when it starts; this one appends to it (adding columns
    rewrites the header and keeps every row, as Lightning does within a run)."""

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        self.metrics_keys = sorted(header)
        log.info("Appending to the existing %s (a resumed run keeps its earlier rows).", self.metrics_file_path)


class CSVLogger(_LightningCSVLogger):
    """Lightning's CSVLogger, except that a run resumed in the same directory appends to its metrics.csv instead
    of deleting it (STYLE pitfall 16)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def reuse_wandb_run_id(cfg: DictConfig) -> None:
    """A resumed run continues the same W&B run: without an explicit `logger.wandb.id`, take the id of the W&B run
    found in this run directory, else in the run directory of the checkpoint resumed from."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is None or wandb_cfg.get("id") or not cfg.get("ckpt_path"):
        return
    places = [Path(cfg.paths.output_dir)]
    ckpt = Path(str(cfg.ckpt_path))
    if ckpt.is_file():
        places.append(ckpt.resolve().parent.parent)  # <run dir>/checkpoints/<file>.ckpt
    for run_dir in places:
        run_id = _latest_wandb_run_id(run_dir / "wandb")
        if run_id:
            log.info("Resuming W&B run %s (found in %s).", run_id, run_dir / "wandb")
            with open_dict(cfg):
                wandb_cfg.id = run_id
            return


def _latest_wandb_run_id(wandb_dir: Path) -> str | None:
    """W&B names a run's folder `run-<time>-<id>` (online) or `offline-run-<time>-<id>`; the newest one wins."""
    runs = sorted(wandb_dir.glob("*run-*-*"), key=lambda p: p.name.removeprefix("offline-"))
    runs = [p for p in runs if p.is_dir() and not p.is_symlink()]
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def configure_wandb(cfg: DictConfig) -> None:
    """Run W&B offline when no API key is available, and never with log_model offline (STYLE pitfall 12)."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is None:
        return
    has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
    with open_dict(cfg):
        if not has_key or os.environ.get("WANDB_MODE") == "offline":
            if not wandb_cfg.get("offline", False):
                log.warning(
                    "No W&B API key found: logging offline into the run directory. Upload later with "
                    "`wandb sync %s/wandb/offline-run-*`.",
                    cfg.paths.output_dir,
                )
            wandb_cfg.offline = True
        if wandb_cfg.get("offline", False):
            wandb_cfg.log_model = False


def _netrc_has_wandb() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def finish_wandb(trainer: L.Trainer) -> None:
    """End the W&B run so that multirun jobs do not merge into one (STYLE pitfall 12)."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
        import wandb

        wandb.finish()
