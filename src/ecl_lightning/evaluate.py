"""`python -m ecl_lightning.evaluate ckpt_path=...`: test a checkpoint; writes metrics.json like training does.

The data defaults to the checkpoint's own run (its config.yaml beside checkpoints/); `data=<name>` picks another.
`heads=label|label+dist|expert<k>` chooses the test-time aggregation. `protocol=shifted` tests on SADE's family of
shifted test priors, with prior correction, expert aggregation and calibration (ecl_lightning.evaluation.protocol).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from ecl_lightning.checkpoint import check_data_fits, read_checkpoint
from ecl_lightning.config import ConfigError
from ecl_lightning.extras import apply_extras
from ecl_lightning.instantiate import instantiate, instantiate_loggers
from ecl_lightning.lifecycle import exit_nonzero_when_stopped
from ecl_lightning.loggers import check_logger_packages, configure_wandb, record_mlflow_run
from ecl_lightning.module import ECLModule
from ecl_lightning.outputs import save_resolved_config, write_test_outputs
from ecl_lightning.train import data_name
from ecl_lightning.validate import check_config

if TYPE_CHECKING:
    from ecl_lightning.data.interface import LongTailData

log = logging.getLogger("ecl_lightning")


def _data_config(cfg: DictConfig, ckpt: Path) -> DictConfig:
    """The data config given on the command line, else the one of the run that wrote the checkpoint."""
    if cfg.get("data") is not None:
        return cfg.data
    run_config = ckpt.resolve().parent.parent / "config.yaml"
    if not run_config.is_file():
        raise ConfigError(f"no data given and no run config at {run_config}: pass data=<name> (and data.data_dir=...)")
    data = OmegaConf.load(run_config).data
    if cfg.get("data_dir"):
        data.data_dir = cfg.data_dir
    return data


def _load_module(checkpoint: dict, **overrides) -> ECLModule:
    """ECLModule from an already read checkpoint (its saved hyper-parameters, `overrides` on top) with its weights;
    as `load_from_checkpoint`, saved values that are no longer arguments are left out."""
    params = inspect.signature(ECLModule).parameters
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in params}
    model = ECLModule(**{**hparams, **overrides})
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint `cfg.ckpt_path` once; return the flat test metrics (also written as metrics.json)."""
    ckpt = Path(cfg.ckpt_path).expanduser()
    check_config(cfg)  # data (when given) and trainer keys, before anything is read
    check_logger_packages(cfg)  # logger=tensorboard / mlflow without the `loggers` extra
    apply_extras(cfg)  # extras.print_config / ignore_warnings
    checkpoint = read_checkpoint(ckpt)  # once: a missing, truncated or foreign file is named here
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    data_cfg = _data_config(cfg, ckpt)
    datamodule: LongTailData = instantiate(data_cfg)
    datamodule.check()
    name = data_name(cfg) if cfg.get("data") is not None else str(data_cfg.get("_target_")).rsplit(".", 1)[-1]
    check_data_fits(checkpoint, ckpt, datamodule.num_classes, datamodule.in_chans, name)

    hparams = checkpoint["hyper_parameters"]
    model = _load_module(checkpoint, eval=dict(hparams.get("eval") or {}, heads=cfg.heads))
    if list(datamodule.class_counts) != list(hparams.get("class_counts") or []):
        log.warning("The evaluated data's training counts differ from the checkpoint's: shot splits follow the data.")
        model.set_class_counts(datamodule.class_counts)

    output_dir = Path(cfg.paths.output_dir)
    with open_dict(cfg):
        cfg.data = data_cfg
    configure_wandb(cfg)  # offline without an API key, as in training
    save_resolved_config(cfg, output_dir)
    loggers = instantiate_loggers(cfg.get("logger"))
    record_mlflow_run(loggers, output_dir)  # config.yaml as an artifact of the eval run
    if cfg.get("protocol", "balanced") != "balanced":
        from ecl_lightning.evaluation.protocol import run_shifted

        return run_shifted(cfg, model, datamodule, output_dir, loggers)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
    with exit_nonzero_when_stopped(trainer, "evaluating"):
        trainer.test(model, datamodule=datamodule)
    metrics = dict(model.test_results)
    if trainer.is_global_zero:
        write_test_outputs(output_dir, metrics, model, datamodule.class_counts, f"{ckpt.name}, heads={cfg.heads}")
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://ecl_lightning.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from ecl_lightning.cli import user_errors_as_messages

    with user_errors_as_messages():  # a config, data or checkpoint error: its message and exit code 2
        evaluate(cfg)


if __name__ == "__main__":
    main()
