"""`python -m ecl_lightning.evaluate ckpt_path=...`: test a checkpoint; writes metrics.json like training does.

The data defaults to the checkpoint's own run (its config.yaml beside checkpoints/); `data=<name>` picks another.
`heads=label|label+dist|expert<k>` chooses the test-time aggregation. `protocol=shifted` tests on SADE's family of
shifted test priors, with prior correction, expert aggregation and calibration (ecl_lightning.posthoc.shifted_eval).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import lightning as L
from omegaconf import DictConfig, open_dict

from ecl_lightning.checkpoint import check_data_fits
from ecl_lightning.config import RENAMED_EVAL_KEYS, renamed_key_error
from ecl_lightning.extras import apply_extras
from ecl_lightning.inference import load_module
from ecl_lightning.instantiate import instantiate, instantiate_loggers
from ecl_lightning.lifecycle import exit_nonzero_when_stopped
from ecl_lightning.loggers import check_logger_packages, configure_wandb, record_mlflow_run
from ecl_lightning.outputs import save_resolved_config, write_test_outputs
from ecl_lightning.plan import plan_checkpoint
from ecl_lightning.validate import check_config

if TYPE_CHECKING:
    from ecl_lightning.data.interface import LongTailData

log = logging.getLogger("ecl_lightning")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint `cfg.ckpt_path` once; return the flat test metrics (also written as metrics.json)."""
    check_config(cfg)  # data (when given) and trainer keys, before anything is read
    for key in cfg:
        if (err := renamed_key_error(str(key), RENAMED_EVAL_KEYS)) is not None:
            raise err  # `+tau=...` or an old eval config: its new name
    check_logger_packages(cfg)  # logger=tensorboard / mlflow without the `loggers` extra
    apply_extras(cfg)  # extras.print_config / ignore_warnings
    run = plan_checkpoint(cfg)  # the checkpoint (read once), its data config and the heads, as predict and export
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule: LongTailData = instantiate(run.data)
    datamodule.check()
    check_data_fits(run.checkpoint, run.ckpt_path, datamodule.num_classes, datamodule.in_chans, run.data_name)

    model = load_module(run.checkpoint, eval=run.eval_config)
    if list(datamodule.class_counts) != list(run.hparams.get("class_counts") or []):
        log.warning("The evaluated data's training counts differ from the checkpoint's: shot splits follow the data.")
        model.set_class_counts(datamodule.class_counts)

    output_dir = Path(cfg.paths.output_dir)
    config = copy.deepcopy(cfg)  # what config.yaml and the loggers record: the data config the run was tested on
    with open_dict(config):
        config.data = run.data
        config.ckpt_path = str(run.ckpt_path)  # a run directory given: the checkpoint file it resolved to
    configure_wandb(config)  # offline without an API key, as in training
    save_resolved_config(config, output_dir)
    loggers = instantiate_loggers(config.get("logger"))
    record_mlflow_run(loggers, output_dir)  # config.yaml as an artifact of the eval run
    if cfg.get("protocol", "balanced") != "balanced":
        from ecl_lightning.posthoc.shifted_eval import run_shifted

        return run_shifted(config, model, datamodule, output_dir, loggers)
    trainer: L.Trainer = instantiate(config.trainer, logger=loggers or False, callbacks=[])
    with exit_nonzero_when_stopped(trainer, "evaluating"):
        trainer.test(model, datamodule=datamodule)
    metrics = dict(model.test_results)
    if trainer.is_global_zero:
        which = f"{run.ckpt_path.name}, heads={run.heads}"
        write_test_outputs(output_dir, metrics, model, datamodule.class_counts, which)
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://ecl_lightning.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from ecl_lightning.cli import user_errors_as_messages

    with user_errors_as_messages():  # a config, data or checkpoint error: its message and exit code 2
        evaluate(cfg)


if __name__ == "__main__":
    main()
