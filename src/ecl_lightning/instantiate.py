"""Building objects from config groups: Hydra's instantiate that lets our own errors through, and the groups that
hold several objects (callbacks, loggers)."""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import InstantiationException
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from ecl_lightning.config import ConfigError


def instantiate(cfg: DictConfig, **kwargs):
    """hydra.utils.instantiate, re-raising our own errors as they are (Hydra wraps them in a long message)."""
    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except InstantiationException as err:
        if err.__cause__ is not None:
            raise err.__cause__ from None
        raise


def instantiate_list(cfg: DictConfig | None, kind: type) -> list[Any]:
    """Instantiate every `_target_` entry of a config group holding several objects (callbacks, loggers)."""
    objects = []
    for name, conf in (cfg or {}).items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            obj = instantiate(conf)
            if not isinstance(obj, kind):
                raise ConfigError(f"{name}: {conf._target_} is not a {kind.__name__}")
            objects.append(obj)
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    return instantiate_list(cfg, Callback)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return instantiate_list(cfg, Logger)
