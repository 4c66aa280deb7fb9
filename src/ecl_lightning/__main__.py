"""`python -m ecl_lightning [overrides]`: the Hydra entry point of training."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="pkg://ecl_lightning.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train and test; return the metric a sweeper optimises (`optimized_metric`)."""
    from ecl_lightning.train import train  # imported here so `--help` and `--cfg` stay fast

    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric") or "")


if __name__ == "__main__":
    main()
