"""Training entry: instantiate data, model, callbacks, loggers and trainer from the config; fit; test once; report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, open_dict

from ecl_lightning.checkpoint import check_data_fits, check_model_fits, read_checkpoint
from ecl_lightning.config import ConfigError
from ecl_lightning.extras import apply_extras
from ecl_lightning.instantiate import instantiate, instantiate_callbacks, instantiate_loggers
from ecl_lightning.launch import check_launch, check_trainer
from ecl_lightning.lifecycle import (  # noqa: F401 (the exit codes are part of this module's interface)
    SIGINT_EXIT_CODE,
    SIGTERM_EXIT_CODE,
    AtomicCheckpointIO,
    exit_nonzero_when_stopped,
    resolve_ckpt_path,
)
from ecl_lightning.loggers import (
    check_logger_packages,
    configure_wandb,
    finish_wandb,
    record_mlflow_run,
    reuse_mlflow_run_id,
    reuse_wandb_run_id,
)
from ecl_lightning.outputs import save_resolved_config, write_json, write_test_outputs
from ecl_lightning.validate import check_config

if TYPE_CHECKING:
    from ecl_lightning.data.interface import LongTailData
    from ecl_lightning.module import ECLModule

log = logging.getLogger("ecl_lightning")


def build(cfg: DictConfig) -> tuple[LongTailData, ECLModule, L.Trainer]:
    """Build datamodule, model and trainer; every config and data error is raised here, before training."""
    check_config(cfg)  # types and ranges of every group, before any data is read
    check_logger_packages(cfg)  # logger=tensorboard / mlflow without the `loggers` extra
    apply_extras(cfg)  # extras.print_config / ignore_warnings
    check_launch(cfg)
    with open_dict(cfg):
        cfg.ckpt_path = resolve_ckpt_path(cfg)  # ckpt_path=last -> the file; a missing or truncated one stops here
    resume = _resume_path(cfg)
    ckpt = read_checkpoint(resume) if resume is not None else None  # read once: its data and model are checked below
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")

    log.info("Data: %s", cfg.data._target_)
    datamodule: LongTailData = instantiate(cfg.data)
    datamodule.check()  # a missing dataset ends the run here, with where it looked and how to get it
    if ckpt is not None:
        check_data_fits(ckpt, resume, datamodule.num_classes, datamodule.in_chans, data_name(cfg))
    class_counts = datamodule.class_counts
    batch_size = cfg.data.get("batch_size")
    if isinstance(batch_size, int) and sum(class_counts) < batch_size:  # drop_last would leave an empty epoch
        raise ConfigError(
            f"data.batch_size={batch_size} is larger than the long-tailed train set ({sum(class_counts)} images): "
            "lower data.batch_size (or raise data.n_max)"
        )
    log.info(
        "Long-tailed train set: %d images, %d classes, counts %d ... %d",
        sum(class_counts), len(class_counts), max(class_counts), min(class_counts),
    )  # fmt: skip

    names = getattr(datamodule, "class_names", None)  # stored in the checkpoint: predict and export show them
    model = instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        in_chans=datamodule.in_chans,
        img_size=datamodule.input_spec().image_size,
        class_counts=class_counts,
        **({"class_names": list(names)} if names is not None else {}),
    )
    if ckpt is not None:
        check_model_fits(ckpt, resume, model, dict(model.hparams))
        del ckpt

    with open_dict(cfg):
        if not datamodule.has_val:
            # No val split without changing the benchmark: train blind, report the last epoch (docs/method.md 5).
            log.info(
                "%s has no validation split: the reported test numbers are the last epoch's.",
                cfg.data._target_,
            )
            cfg.trainer.limit_val_batches = 0
            cfg.trainer.num_sanity_val_steps = 0
            if cfg.get("callbacks") and cfg.callbacks.get("model_checkpoint"):
                cfg.callbacks.model_checkpoint.monitor = None
                cfg.callbacks.model_checkpoint.filename = "last_epoch_{epoch:03d}"
    configure_wandb(cfg)
    reuse_wandb_run_id(cfg)
    reuse_mlflow_run_id(cfg)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    if not loggers and any(isinstance(c, LearningRateMonitor) for c in callbacks):
        # LearningRateMonitor refuses a Trainer without a logger, and only at on_train_start (after data set-up).
        log.info("No logger (~logger): no learning-rate monitor either (it logs through one); see train.log.")
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # Checkpoints written atomically (a crash or a full disk leaves no truncated file), unless plugins are configured.
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **plugins)
    check_trainer(cfg, trainer, datamodule.has_val)
    return datamodule, model, trainer


def _resume_path(cfg: DictConfig) -> Path | None:
    """The checkpoint file a fit resumes from (`ckpt_path` after `resolve_ckpt_path`), to check before building;
    None without one, or for Lightning's own names (`hpc`, `registry:...`)."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or not cfg.get("train", True):
        return None
    path = Path(str(ckpt_path)).expanduser()
    return path if path.is_file() else None


def data_name(cfg: DictConfig) -> str:
    """The data config's name as the user picks it (`cifar10_lt`), else its DataModule class."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("data")
        if choice:
            return str(choice)
    return str(cfg.data.get("_target_", "?")).rsplit(".", 1)[-1]


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test once; write config.yaml, data_subset.json, metrics.json and per_class.json in the run dir."""
    output_dir = Path(cfg.paths.output_dir)
    datamodule, model, trainer = build(cfg)
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
