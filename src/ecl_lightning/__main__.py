"""`python -m ecl_lightning [overrides]`: the Hydra entry point of training."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="pkg://ecl_lightning.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train and test; return the metric a sweeper optimises (`optimized_metric`), or None where the run has none
    and no sweeper reads it (a run without a val split: CIFAR-LT, iNat 2018)."""
    from ecl_lightning.cli import user_errors_as_messages
    from ecl_lightning.launch import optimizing_sweeper
    from ecl_lightning.train import train  # imported here so `--help` and `--cfg` stay fast

    with user_errors_as_messages():  # a config, data or checkpoint error: its message and exit code 2
        metrics = train(cfg)
        name = cfg.get("optimized_metric")
        if not name:
            return None
        if name in metrics:
            return float(metrics[name])
        # Normally refused before training (launch.check_built_trainer); this guards what that cannot foresee.
        if optimizing_sweeper():
            from ecl_lightning.config import ConfigError

            raise ConfigError(
                f"optimized_metric={name!r} is not among this run's metrics ({', '.join(sorted(metrics)) or 'none'}); "
                "val/acc_best needs checkpointing on a val split (not debug=fdr)"
            )
        logging.getLogger("ecl_lightning").info(
            "optimized_metric=%s is not among this run's metrics (a run without a val split has no val/ metrics): "
            "no value is returned, and none is needed (only a sweeper that optimises reads it).",
            name,
        )
        return None


if __name__ == "__main__":
    main()
