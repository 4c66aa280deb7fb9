"""Check the composed config before anything is built or read: every user-facing key of the data, model and trainer
groups gets its type (from the annotations of what it builds) and range checked, and each error names the key."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ecl_lightning.config import (
    ConfigError,
    EvalConfig,
    LossConfig,
    NetConfig,
    OptimConfig,
    ScheduleConfig,
    check_type,
    from_dict,
    parameter_types,
)

# Model sub-groups and the dataclass that types each (the module builds them with `from_dict`).
MODEL_GROUPS = {
    "net": NetConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "eval": EvalConfig,
}

# Lower bounds of the data keys (when the DataModule takes them); the types come from its config_keys() (its __init__
# and options dataclass annotations).
DATA_MINIMUM = {
    "batch_size": 1,
    "eval_batch_size": 1,
    "num_workers": 0,
    "imbalance_factor": 1,
    "n_max": 1,
    "val_per_class": 0,
    "num_classes": 1,
    "image_size": 1,
    "resize_size": 1,
}

# The Trainer values this package relies on: (type, lower bound); Lightning's own annotations are too loose to say
# what a run needs (a str `max_epochs` is only refused inside fit).
TRAINER_KEYS: dict[str, tuple[Any, float | None]] = {
    "max_epochs": (int | None, -1),
    "min_epochs": (int | None, 0),
    "max_steps": (int, -1),
    "devices": (int | str | list, None),
    "num_nodes": (int, 1),
    "accelerator": (str | dict, None),  # a name, or a `_target_` node Hydra instantiates
    "strategy": (str | dict, None),
    "precision": (str | int | None, None),
    "check_val_every_n_epoch": (int | None, 1),
    "log_every_n_steps": (int | None, 1),
    "num_sanity_val_steps": (int | None, -1),
    "accumulate_grad_batches": (int, 1),
    "gradient_clip_val": (float | None, 0),
    "limit_train_batches": (int | float | None, 0),
    "limit_val_batches": (int | float | None, 0),
    "limit_test_batches": (int | float | None, 0),
    "fast_dev_run": (bool | int, 0),
    "sync_batchnorm": (bool, None),
    "enable_progress_bar": (bool | None, None),
    "use_distributed_sampler": (bool, None),
    "deterministic": (bool | str | None, None),
    "default_root_dir": (str | None, None),
}
# Top-level keys of train.yaml and eval.yaml.
TOP_LEVEL_KEYS: dict[str, Any] = {
    "seed": int | None,
    "train": bool,
    "test": bool,
    "ckpt_path": str | None,
    "optimized_metric": str | None,
    "heads": str,
    "data_dir": str | None,
}
_BUILT_BY_CODE = ("_target_", "_convert_", "_partial_", "_recursive_", "_args_")


def _plain(cfg: DictConfig, group: str) -> dict:
    """The group as plain Python values, interpolations resolved; a broken interpolation is named."""
    try:
        return OmegaConf.to_container(cfg[group], resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{group}: {err}".splitlines()[0]) from None


def _minimum(key: str, value: Any, low: float | None) -> None:
    if low is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if value < low:
        raise ConfigError(f"{key}={value!r} must be >= {low}")


def check_keys(group: str, values: dict, owner: str, keys: dict[str, Any], takes_any: bool = False) -> None:
    """Every key of `values` is one of `keys` ({key: annotation}; any other key passes when `takes_any`), of its
    annotated type; an unknown key names `owner` and every valid key."""
    for key, value in values.items():
        if key in _BUILT_BY_CODE:
            continue
        if key not in keys:
            if takes_any:
                continue
            raise ConfigError(f"unknown key {group}.{key} for {owner}; valid keys: {sorted(keys)}")
        check_type(f"{group}.{key}", value, keys[key])


def check_signature_keys(group: str, values: dict, target: Callable, skip: tuple[str, ...] = ()) -> None:
    """Every key of a `_target_` group is a parameter of the target (a class's __init__, or a function), of the
    annotated type."""
    keys, takes_any = parameter_types(target)
    check_keys(group, {k: v for k, v in values.items() if k not in skip}, target.__name__, keys, takes_any)


def _target(group: str, values: dict) -> type | None:
    name = values.get("_target_")
    if not name:
        return None
    try:
        return get_class(name)
    except Exception as err:
        raise ConfigError(f"{group}._target_={name!r} cannot be imported ({err})".splitlines()[0]) from None


def check_data(cfg: DictConfig) -> None:
    """data.*: the DataModule's keys (its own parameters and, for the package's DataModules, the fields of its
    options dataclass), their types and lower bounds (batch_size >= 1, num_workers >= 0...)."""
    values = _plain(cfg, "data")
    target = _target("data", values)
    if hasattr(target, "config_keys"):  # a BaseDataModule: own parameters + options (data/datamodules/base.py)
        check_keys("data", values, target.__name__, target.config_keys())
    elif target is not None:
        check_signature_keys("data", values, target)
    for key, low in DATA_MINIMUM.items():
        if values.get(key) is not None:
            _minimum(f"data.{key}", values[key], low)


def check_model(cfg: DictConfig) -> None:
    """model.*: each sub-group against its dataclass (types, choices, ranges), the top-level keys against the
    module's __init__, and the combinations that would leave a set value unused."""
    values = _plain(cfg, "model")
    target = _target("model", values)
    if target is not None:
        check_signature_keys("model", values, target, skip=tuple(MODEL_GROUPS))
    groups = {}
    for name, cls in MODEL_GROUPS.items():
        if name in values:
            check_type(f"model.{name}", values[name], dict | None)
            groups[name] = from_dict(cls, values[name], f"model.{name}")
    if "net" in groups:
        check_backbone(groups["net"])
    if "net" in groups and "loss" in groups:
        check_experts(groups["net"], groups["loss"])


def check_backbone(net: NetConfig) -> None:
    """model.net.backbone is registered (or a timm model, `timm:<name>`) and model.net.backbone_kwargs are arguments
    of it (typed)."""
    from ecl_lightning.models.backbones import BACKBONES, TIMM_PREFIX

    if net.backbone.startswith(TIMM_PREFIX):
        check_timm(net)
        return
    if net.backbone not in BACKBONES:
        raise ConfigError(
            f"model.net.backbone={net.backbone!r} is not one of {sorted(BACKBONES)}, nor timm:<name> (any timm model)"
        )
    check_signature_keys("model.net.backbone_kwargs", net.backbone_kwargs, BACKBONES[net.backbone], skip=("in_chans",))


def check_timm(net: NetConfig) -> None:
    """A timm backbone: timm is installed and knows the name, the package's own keys are left to it, the weights file
    exists, and the fused path (which has no rules for timm models) is not forced; no model is built here."""
    from ecl_lightning.models.experts import timm_unfusable
    from ecl_lightning.models.timm_backbones import check_timm_backbone, timm_trunk

    check_timm_backbone(net.backbone.removeprefix("timm:"), net.backbone_kwargs)
    hints = typing.get_type_hints(timm_trunk)
    for key in ("pretrained_path", "vit_stages"):  # the package's own keys; the others go to timm.create_model
        if key in net.backbone_kwargs:
            check_type(f"model.net.backbone_kwargs.{key}", net.backbone_kwargs[key], hints[key])
    if net.fuse_experts is True:
        raise ConfigError(timm_unfusable(net.backbone))


def check_experts(net: NetConfig, loss: LossConfig) -> None:
    """One expert has no peer to distil from: a distillation weight > 0 would be silently unused."""
    if net.num_experts > 1:
        return
    unused = [f"model.loss.{k}={getattr(loss, k)}" for k in ("kd_weight", "feat_weight") if getattr(loss, k) > 0]
    if unused:
        raise ConfigError(
            f"model.net.num_experts={net.num_experts}: {' and '.join(unused)} would be unused (distillation needs "
            "other experts). Set model.net.num_experts >= 2, or model.loss.kd_weight=0 model.loss.feat_weight=0 "
            "(as model=balanced_softmax does)"
        )


def check_trainer(cfg: DictConfig) -> None:
    """trainer.*: the values the module and the loops rely on, typed and bounded."""
    values = _plain(cfg, "trainer")
    for key, (annotation, low) in TRAINER_KEYS.items():
        if key not in values:
            continue
        value = values[key]
        check_type(f"trainer.{key}", value, annotation)
        if key == "devices":
            if isinstance(value, int) and (value == 0 or value < -1):
                raise ConfigError(f"trainer.devices={value} must be >= 1, -1 (all devices) or auto")
        elif key.startswith("limit_") and isinstance(value, float) and not 0 <= value <= 1:
            raise ConfigError(f"trainer.{key}={value} must be a fraction in [0, 1] or a number of batches")
        else:
            _minimum(f"trainer.{key}", value, low)


def check_top_level(cfg: DictConfig) -> None:
    """seed, train, test, ckpt_path...: the run's own switches."""
    for key, annotation in TOP_LEVEL_KEYS.items():
        if key in cfg:
            try:
                value = cfg[key]
                if isinstance(value, DictConfig | ListConfig):
                    value = OmegaConf.to_container(value, resolve=True)
            except OmegaConfBaseException as err:
                raise ConfigError(f"{key}: {err}".splitlines()[0]) from None
            check_type(key, value, annotation)


def check_config(cfg: DictConfig) -> None:
    """Type and range check the top-level keys and every group present (data, model, trainer) before any data is
    read."""
    check_top_level(cfg)
    for group, check in (("data", check_data), ("model", check_model), ("trainer", check_trainer)):
        if cfg.get(group) is not None:
            check(cfg)
