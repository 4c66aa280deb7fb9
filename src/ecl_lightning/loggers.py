"""Loggers: the CSV file appended to across a resume, the W&B and MLflow run ids reused, W&B offline without an API
key, the W&B run ended with its job, and the packages of the optional loggers checked before anything is built."""

from __future__ import annotations

import csv
import importlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import MLFlowLogger as _LightningMLFlowLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, open_dict

from ecl_lightning.config import ConfigError

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
    of deleting it (Lightning's writer deletes an existing file when it starts, losing the rows before the resume)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def _resumed_run_dirs(cfg: DictConfig) -> list[Path]:
    """Where a resumed run's logger ids are recorded: this run directory, then the checkpoint's run directory."""
    places = [Path(cfg.paths.output_dir)]
    ckpt = Path(str(cfg.ckpt_path))
    if ckpt.is_file():
        places.append(ckpt.resolve().parent.parent)  # <run dir>/checkpoints/<file>.ckpt
    return places


def _reuse_run_id(
    cfg: DictConfig, logger: str, name: str, id_key: str, find: Callable[[Path], tuple[str | None, str]]
) -> None:
    """Without an explicit `logger.<logger>.<id_key>`, a resumed run (ckpt_path set) takes the run id that `find`
    reads in this run directory, else in the run directory of the checkpoint resumed from. `find(run_dir)` gives
    (the id or None, where it was, for the log)."""
    node = (cfg.get("logger") or {}).get(logger)
    if node is None or node.get(id_key) or not cfg.get("ckpt_path"):
        return
    for run_dir in _resumed_run_dirs(cfg):
        run_id, where = find(run_dir)
        if run_id:
            log.info("Resuming %s run %s (%s).", name, run_id, where)
            with open_dict(cfg):
                node[id_key] = run_id
            return


def reuse_wandb_run_id(cfg: DictConfig) -> None:
    """A resumed run continues the same W&B run: without an explicit `logger.wandb.id`, take the id of the W&B run
    found in this run directory, else in the run directory of the checkpoint resumed from."""
    _reuse_run_id(
        cfg,
        "wandb",
        "W&B",
        "id",
        lambda run_dir: (_latest_wandb_run_id(run_dir / "wandb"), f"found in {run_dir / 'wandb'}"),
    )


def _latest_wandb_run_id(wandb_dir: Path) -> str | None:
    """W&B names a run's folder `run-<time>-<id>` (online) or `offline-run-<time>-<id>`; the newest one wins."""
    runs = sorted(wandb_dir.glob("*run-*-*"), key=lambda p: p.name.removeprefix("offline-"))
    runs = [p for p in runs if p.is_dir() and not p.is_symlink()]
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def configure_wandb(cfg: DictConfig) -> None:
    """Run W&B offline when no API key is available, and never with log_model offline (WandbLogger raises on
    `offline=True` with `log_model`: there is nowhere to upload the checkpoints)."""
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
    """End the W&B run: the jobs of a multirun share one process, and without `wandb.finish()` the next job logs
    into this job's run."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
        import wandb

        wandb.finish()


# Logger classes from the `loggers` extra, and the modules one of which each needs (Lightning's TensorBoardLogger
# writes with tensorboard, else tensorboardX).
EXTRA_LOGGERS = {"TensorBoardLogger": ("tensorboard", "tensorboardX"), "MLFlowLogger": ("mlflow",)}


def check_logger_packages(cfg: DictConfig) -> None:
    """A logger whose package is missing stops the run here, with the install line, not inside Lightning later."""
    for name, conf in (cfg.get("logger") or {}).items():
        target = str((conf or {}).get("_target_", "")).rsplit(".", 1)[-1]
        modules = EXTRA_LOGGERS.get(target)
        if modules and not any(_importable(module) for module in modules):
            raise ConfigError(
                f"logger.{name} ({target}) needs the {modules[0]} package, which is not installed: "
                'pip install "ecl_lightning[loggers]"'
            )


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


MLFLOW_RUN_ID_FILE = "mlflow_run_id.txt"  # in the run directory: the run a resume continues


class MLFlowLogger(_LightningMLFlowLogger):
    """Lightning's MLFlowLogger with the config as params named like Hydra overrides (`model.loss.kd_weight`), and
    only the params a run does not have yet (MLflow refuses to change a param's value, e.g. on resume)."""

    @rank_zero_only
    def log_hyperparams(self, params: dict) -> None:
        from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
        from mlflow.entities import Param

        params = _convert_params(params)
        if set(params) == {"config"}:  # train.py logs the whole resolved config under one key
            flat = _flatten_dict(params["config"], delimiter=".")
        else:  # Lightning logs the module's hparams, its init args: the model config plus class_counts, num_classes
            flat = {f"model.{k}": v for k, v in _flatten_dict(params, delimiter=".").items()}
        flat = {k: str(v)[:250] for k, v in flat.items()}  # Lightning's truncation
        logged = self.experiment.get_run(self.run_id).data.params
        changed = sorted(k for k in flat if k in logged and logged[k] != flat[k])
        if changed:
            log.info(
                "MLflow keeps a param's first value: %d differ now (%s%s); config.yaml has the current ones.",
                len(changed), ", ".join(changed[:5]), ", ..." if len(changed) > 5 else "",
            )  # fmt: skip
        new = [Param(key=k, value=v) for k, v in flat.items() if k not in logged]
        for start in range(0, len(new), 100):  # MLflow takes at most 100 params per call
            self.experiment.log_batch(run_id=self.run_id, params=new[start : start + 100], **self._log_batch_kwargs)


def reuse_mlflow_run_id(cfg: DictConfig) -> None:
    """A resumed run continues the same MLflow run: without an explicit `logger.mlflow.run_id`, take the id
    recorded in this run directory, else in the run directory of the checkpoint resumed from."""

    def recorded(run_dir: Path) -> tuple[str | None, str]:
        record = run_dir / MLFLOW_RUN_ID_FILE
        return (record.read_text().strip() or None) if record.is_file() else None, f"recorded in {record}"

    _reuse_run_id(cfg, "mlflow", "MLflow", "run_id", recorded)


@rank_zero_only
def record_mlflow_run(loggers: list, output_dir: Path) -> None:
    """Write the MLflow run's id into the run directory (for a resume), mark a resumed run running again, and log
    the resolved config.yaml as an artifact. Call after config.yaml is written."""
    for logger in loggers:
        if not isinstance(logger, _LightningMLFlowLogger):
            continue
        from mlflow.entities import RunStatus
        from mlflow.exceptions import MlflowException

        asked = logger._run_id  # set by logger.mlflow.run_id or by reuse_mlflow_run_id
        try:
            run = logger.experiment.get_run(logger.run_id)
        except MlflowException as error:
            if asked is None:
                raise
            record = output_dir / MLFLOW_RUN_ID_FILE
            recorded = record.is_file() and record.read_text().strip() == asked
            raise ConfigError(
                f"logger.mlflow.run_id={asked}{f' (recorded in {record})' if recorded else ''}: not found at "
                f"logger.mlflow.tracking_uri={logger._tracking_uri} ({str(error).splitlines()[0]}). Resume with the "
                f"first part's tracking_uri{f', or delete {record} to start a new MLflow run' if recorded else ''}."
            ) from error
        if run.info.status != RunStatus.to_string(RunStatus.RUNNING):  # a resumed run, ended by its first part
            logger.experiment.update_run(logger.run_id, status="RUNNING")
        (output_dir / MLFLOW_RUN_ID_FILE).write_text(logger.run_id + "\n")
        logger.experiment.log_artifact(logger.run_id, str(output_dir / "config.yaml"))
