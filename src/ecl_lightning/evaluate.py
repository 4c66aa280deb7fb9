"""`python -m ecl_lightning.evaluate ckpt_path=...`: test a checkpoint; writes metrics.json like training does.

The data defaults to the checkpoint's own run (its config.yaml beside checkpoints/); `data=<name>` picks another.
`heads=label|label+dist|expert<k>` chooses the test-time aggregation. `protocol=shifted` tests on SADE's family of
shifted test priors, with prior correction, expert aggregation and calibration (ecl_lightning.evaluation.protocol).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ecl_lightning.config import ConfigError
from ecl_lightning.lifecycle import exit_nonzero_when_stopped
from ecl_lightning.module import ECLModule
from ecl_lightning.utils import (
    configure_wandb,
    instantiate,
    instantiate_loggers,
    save_resolved_config,
    write_test_outputs,
)

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


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint `cfg.ckpt_path` once; return the flat test metrics (also written as metrics.json)."""
    ckpt = Path(cfg.ckpt_path).expanduser()
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt} does not exist")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    data_cfg = _data_config(cfg, ckpt)
    datamodule = instantiate(data_cfg)
    datamodule.check()

    hparams = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    eval_cfg = dict(hparams.get("eval") or {}, heads=cfg.heads)
    model = ECLModule.load_from_checkpoint(ckpt, map_location="cpu", eval=eval_cfg)
    if datamodule.num_classes != model.num_classes:
        raise ConfigError(f"the data has {datamodule.num_classes} classes, the checkpoint {model.num_classes}")
    if list(datamodule.class_counts) != list(hparams.get("class_counts") or []):
        log.warning("The evaluated data's training counts differ from the checkpoint's: shot splits follow the data.")
        model.set_class_counts(datamodule.class_counts)

    output_dir = Path(cfg.paths.output_dir)
    with open_dict(cfg):
        cfg.data = data_cfg
    configure_wandb(cfg)  # offline without an API key, as in training
    save_resolved_config(cfg, output_dir)
    loggers = instantiate_loggers(cfg.get("logger"))
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
    evaluate(cfg)


if __name__ == "__main__":
    main()
