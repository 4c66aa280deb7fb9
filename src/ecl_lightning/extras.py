"""`extras` (conf/extras/): conveniences applied when a run starts, as in lightning-hydra-template."""

from __future__ import annotations

import logging
import warnings

from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("ecl_lightning")


def apply_extras(cfg: DictConfig) -> None:
    """`extras.ignore_warnings`: silence Python warnings; `extras.print_config`: log the resolved config (rank 0)."""
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("print_config"):
        _log_config(cfg)


@rank_zero_only
def _log_config(cfg: DictConfig) -> None:
    log.info("Config (extras.print_config=true):\n%s", OmegaConf.to_yaml(cfg, resolve=True).rstrip())
