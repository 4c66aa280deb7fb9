"""Training entry, as lightning-hydra-template's train(): plan the run (ecl_lightning.plan), instantiate data,
model, callbacks, loggers and trainer from the plan; fit; test once; report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from ecl_lightning.extras import apply_extras
from ecl_lightning.instantiate import instantiate, instantiate_callbacks, instantiate_loggers
from ecl_lightning.launch import check_built_trainer
from ecl_lightning.lifecycle import (  # noqa: F401 (the exit codes are part of this module's interface)
    SIGINT_EXIT_CODE,
    SIGTERM_EXIT_CODE,
    AtomicCheckpointIO,
    exit_nonzero_when_stopped,
)
from ecl_lightning.loggers import finish_wandb, record_mlflow_run
from ecl_lightning.outputs import save_resolved_config, write_json, write_test_outputs
from ecl_lightning.plan import (
    DataInfo,
    RunPlan,
    callbacks_config,
    check_before_data,
    check_resumed_weights,
    data_name,
    plan,
    run_config,
)

if TYPE_CHECKING:
    from ecl_lightning.data.interface import LongTailData
    from ecl_lightning.module import ECLModule

log = logging.getLogger("ecl_lightning")


class Run(NamedTuple):
    """A built run: its plan, the config it was built from (the plan applied), and the objects."""

    plan: RunPlan
    config: DictConfig
    datamodule: LongTailData
    model: ECLModule
    trainer: L.Trainer


def build_run(cfg: DictConfig) -> Run:
    """Plan the run (ecl_lightning.plan: every config, data and checkpoint error is raised there), then
    instantiate datamodule, model, callbacks, loggers and trainer from the plan. `cfg` is not changed."""
    checkpoint = check_before_data(cfg)  # config values, launch mix, the resumed checkpoint: before any data is read
    apply_extras(cfg)  # extras.print_config / ignore_warnings
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")

    log.info("Data: %s", cfg.data._target_)
    datamodule: LongTailData = instantiate(cfg.data)
    datamodule.check()  # a missing dataset ends the run here, with where it looked and how to get it
    run = plan(cfg, DataInfo.of(datamodule, data_name(cfg), cfg.data._target_), checkpoint)
    for note in run.notes:
        log.info(note)
    model: ECLModule = instantiate(cfg.model, **run.model_kwargs)
    check_resumed_weights(run, checkpoint, model)
    del checkpoint

    config = run_config(cfg, run)
    callbacks = instantiate_callbacks(callbacks_config(config, run))
    loggers = instantiate_loggers(config.get("logger"))
    plugins = {"plugins": [AtomicCheckpointIO()]} if run.atomic_checkpoints else {}
    trainer: L.Trainer = instantiate(config.trainer, callbacks=callbacks, logger=loggers or False, **plugins)
    check_built_trainer(config, trainer, run.data.has_val)  # what Lightning resolved (precision, strategy), before fit
    return Run(run, config, datamodule, model, trainer)


def build(cfg: DictConfig) -> tuple[LongTailData, ECLModule, L.Trainer]:
    """Build datamodule, model and trainer; every config and data error is raised here, before training."""
    run = build_run(cfg)
    return run.datamodule, run.model, run.trainer


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test once; write config.yaml, data_subset.json, metrics.json and per_class.json in the run dir."""
    run = build_run(cfg)
    cfg = run.config  # the plan applied: what was built, and what config.yaml and the loggers record
    datamodule, model, trainer = run.datamodule, run.model, run.trainer
    output_dir = Path(cfg.paths.output_dir)
    save_resolved_config(cfg, output_dir)
    if trainer.is_global_zero:
        write_json(output_dir / "data_subset.json", datamodule.subset_info())
    for logger in trainer.loggers:
        logger.log_hyperparams({"config": _plain(cfg)})
    record_mlflow_run(trainer.loggers, output_dir)  # rank zero: its id for a resume, config.yaml as an artifact

    if cfg.get("train", True):
        with exit_nonzero_when_stopped(trainer, "training"):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    # The last epoch's val metrics, read now: trainer.test() replaces callback_metrics with the test ones.
    val_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1}
    best = _best_val(trainer)
    if best is not None:
        val_metrics["val/acc_best"] = best
    metrics: dict[str, float] = {}
    if cfg.get("test", True):
        ckpt_path, which = _test_checkpoint(trainer, datamodule.has_val)
        log.info("Testing the %s%s", which, f" ({ckpt_path})" if ckpt_path else "")
        with exit_nonzero_when_stopped(trainer, "testing"):
            trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = dict(model.test_results)
        if best is not None:
            metrics["val/acc_best"] = best
        if trainer.is_global_zero:
            write_test_outputs(output_dir, metrics, model, datamodule.class_counts, which)

    finish_wandb(trainer)
    return {**val_metrics, **metrics}


def _test_checkpoint(trainer: L.Trainer, has_val: bool) -> tuple[str | None, str]:
    """The best-by-val checkpoint where the data has a val split and one was saved, else the weights in memory."""
    callback = trainer.checkpoint_callback
    if has_val and isinstance(callback, ModelCheckpoint) and callback.best_model_path and callback.monitor:
        return callback.best_model_path, "best val weights"
    return None, "last weights"


def _best_val(trainer: L.Trainer) -> float | None:
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.best_model_score is not None:
        return float(callback.best_model_score)
    return None


def _plain(cfg: DictConfig) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)
