"""Typed, validated views of the config groups (the model's sub-groups, the options every DataModule takes), so a wrong
key or value fails before any data is loaded."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecl_lightning.heads import Heads
from ecl_lightning.losses import (
    EXPERT_REDUCTIONS,
    FEAT_DISTANCES,
    FEAT_TARGETS,
    HCM_MASKS,
    KD_TARGETS,
    LABEL_LOSSES,
    REWEIGHT_RULES,
)

CONTRASTIVE = ("moco", "supcon", "none")
HCM_MINING = ("first", "mean")
REWEIGHT_TARGETS = ("dist", "label", "both")
MOCO_EMA_SCOPES = ("all", "backbone")
MOCO_UPDATES = ("before_keys", "after_keys")
MOCO_INITS = ("copy", "random")
KD_PRIORS = ("train", "expert")
# The objective's terms, in the order they are summed (module.ECLModule.compute_loss; formulas: docs/method.md).
LOSS_TERMS = ("label", "hcm", "kd_hcm", "kd", "feat", "con", "diversity")
# A term -> the weight key it is multiplied by (label: 1).
TERM_WEIGHTS = {
    "hcm": "hcm_weight",
    "kd_hcm": "hcm_kd_weight",
    "kd": "kd_weight",
    "feat": "feat_weight",
    "con": "con_weight",
    "diversity": "diversity_weight",
}


class ConfigError(ValueError):
    """A config value is wrong; the message names the key (as a Hydra override path) and the allowed values."""


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {list(allowed)}")


def check_fuse_experts(value: Any) -> None:
    """model.net.fuse_experts is false, true or auto (checked once here, for the config and for MultiExpertNet)."""
    if not (isinstance(value, bool) or value == "auto"):
        raise ConfigError(f"model.net.fuse_experts={value!r} is not one of false, true, auto")


def _positive(key: str, value: float, strict: bool = False) -> None:
    if value < 0 or (strict and value == 0):
        raise ConfigError(f"{key}={value!r} must be {'> 0' if strict else '>= 0'}")


_KINDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}


def _type_matches(value: Any, annotation: Any) -> bool:
    """Whether `value` (a plain config value) fits `annotation`; annotations we cannot check pass."""
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_matches(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is None or annotation is type(None):
        return value is None
    kind = origin or annotation
    if kind is float:  # an int is a number too; a bool is not (YAML `true` is not a weight)
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in (list, tuple, Sequence):
        return isinstance(value, list | tuple)
    if kind in (dict, Mapping):
        return isinstance(value, Mapping)
    return isinstance(value, kind) if isinstance(kind, type) else True


def _describe(annotation: Any) -> str:
    """`int | None` -> 'an integer or null', for the error message."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(arg) for arg in typing.get_args(annotation)))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    if annotation is None or annotation is type(None):
        return "null"
    kind = origin or annotation
    kind = {tuple: list, Sequence: list, Mapping: dict}.get(kind, kind)
    return _KINDS.get(kind, getattr(kind, "__name__", str(kind)))


def check_type(key: str, value: Any, annotation: Any) -> None:
    """Raise ConfigError `key=value must be <kind>` when `value` does not fit the type annotation."""
    if not _type_matches(value, annotation):
        raise ConfigError(f"{key}={value!r} must be {_describe(annotation)}")


# Options renamed, old name -> (new name, why), so an old config or override is told the new name. Checkpoints written
# before a rename are read with the new names (upgrade_keys).
RENAMED_KEYS = {
    "model.loss.warmup_epochs": (
        "model.loss.ramp_epochs",
        "the epochs over which the distillation and feature weights ramp up; model.schedule.warmup_epochs is the "
        "learning-rate warm-up",
    ),
}


# The same for the top-level keys of the evaluate config (conf/eval.yaml).
RENAMED_EVAL_KEYS = {
    "tau": (
        "correction_tau",
        "the strength of the post-hoc prior correction z + correction_tau * log pi; model.loss.tau is the training "
        "loss's logit adjustment",
    ),
}


def renamed_key_error(key: str, renamed: dict[str, tuple[str, str]]) -> ConfigError | None:
    """The error for an option given under the name it had before a rename, or None for any other key."""
    if key not in renamed:
        return None
    new, why = renamed[key]
    return ConfigError(f"{key} is now {new} ({why}): rename it in your config or override")


def upgrade_keys(values: dict | None, prefix: str) -> dict:
    """The values of group `prefix` (e.g. `model.loss`) with the keys renamed since they were saved under their new
    names: what the module does with the hyper-parameters of a checkpoint written before a rename."""
    values = dict(values or {})
    for old, (new, _) in RENAMED_KEYS.items():
        group, key = old.rsplit(".", 1)
        if group == prefix and key in values:
            values.setdefault(new.rsplit(".", 1)[1], values.pop(key))
    return values


def from_dict(cls, values: dict | None, prefix: str):
    """Build dataclass `cls` from a plain dict; an unknown key or a value of the wrong type (checked against the
    field's annotation) raises ConfigError naming `prefix.key`."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if (err := renamed_key_error(f"{prefix}.{key}", RENAMED_KEYS)) is not None:
            raise err
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{prefix}.{k}' for k in unknown)}; valid keys: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        check_type(f"{prefix}.{key}", value, hints[key])
    return cls(**values)


def parameter_types(target: Callable) -> tuple[dict[str, Any], bool]:
    """({parameter: annotation} of a function or a class's __init__, Any where none can be evaluated; *args and
    **kwargs left out), and whether it takes **kwargs."""
    params = inspect.signature(target).parameters
    try:
        hints = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    except Exception:  # an annotation we cannot evaluate: names only
        hints = {}
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    annotations = {name: hints.get(name, Any) for name, p in params.items() if p.kind not in variadic}
    return annotations, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def field_types(cls) -> dict[str, Any]:
    """{field: annotation} of a dataclass, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


# ---- data: the options every DataModule takes (data.<key>, flat beside the DataModule's own keys) ----------------
@dataclass
class DataOptions:
    """The loader and augmentation options of every DataModule (data/datamodules/base.py stores them as attributes)."""

    batch_size: int = 128  # training batch; every training batch is full (drop_last)
    eval_batch_size: int | None = None  # validation and test batch; null: batch_size
    num_workers: int = 2
    pin_memory: bool = False
    persistent_workers: bool = True  # only with num_workers > 0
    augment: bool = True  # false: the training views are the eval transform


@dataclass
class InMemoryOptions(DataOptions):
    """The options of the in-memory datasets (Fashion-MNIST-LT, CIFAR-LT): the long-tail profile, download, and the
    training views built on the device."""

    imbalance_factor: float = 100.0  # n_max / n_min of the profile n_i = n_max * IF^(-i/(C-1))
    n_max: int | None = None  # images of the head class; null: the dataset's default
    download: bool = False  # fetch the files (torchvision) when they are missing
    gpu_augment: bool = False  # the loader yields uint8 images; the two views are built batched on the device


@dataclass
class SplitFileOptions(DataOptions):
    """The options of the split-file benchmarks (ImageNet-LT, Places-LT, iNat 2018): more workers to decode JPEGs."""

    num_workers: int = 8


@dataclass
class NetConfig:
    backbone: str = "resnet_small"
    backbone_kwargs: dict = field(default_factory=dict)
    num_experts: int = 3
    shared_stages: int = 0
    head: str = "linear"
    head_scale: float = 16.0
    proj_dim: int = 128
    proj_hidden: int | None = None
    fuse_experts: bool | str = "auto"  # run the K experts as one grouped computation; auto: on CUDA only

    def __post_init__(self) -> None:
        if self.num_experts < 1:
            raise ConfigError(f"model.net.num_experts={self.num_experts} must be >= 1")
        _choice("model.net.head", self.head, ("linear", "cosine"))
        check_fuse_experts(self.fuse_experts)


@dataclass
class LossConfig:
    tau: float = 1.0
    hcm: bool = False
    hcm_k: int = 30
    hcm_mask: str = "neg_inf"
    hcm_mining: str = "first"
    hcm_weight: float = 1.0
    hcm_kd_weight: float = 0.0
    dist_head: bool = True
    distill_into_label_head: bool = False
    kd_weight: float = 0.6
    kd_temperature: float = 1.0
    kd_target: str = "ensemble"
    detach_teacher: bool = True
    reweight: str = "ratio"
    reweight_target: str = "dist"
    reweight_gamma: float = 1.0
    reweight_min: float = 0.1
    reweight_max: float = 10.0
    class_ema_momentum: float = 0.9
    feat_weight: float = 1.0
    feat_distance: str = "mse"
    feat_target: str = "others_mean"
    contrastive: str = "moco"
    con_weight: float = 1.0
    con_temperature: float = 0.2
    moco_momentum: float = 0.999
    moco_ema_scope: str = "all"
    moco_update: str = "before_keys"
    moco_init: str = "copy"
    moco_copy_buffers: bool = True
    queue_size: int = 1024
    ramp_epochs: float = 5.0  # the distillation and feature weights ramp from 0 (model.schedule.warmup_epochs: the lr)
    # the objective as a list of terms (LOSS_TERMS); null: every term whose weight is > 0 (and label)
    terms: list | None = None
    # per-expert label losses (skill-diverse experts: SADE, BalPoE, RIDE; docs/method.md section 3.1)
    label_loss: str = "ce"
    label_tau: list | None = None
    label_inverse_tau: list | None = None
    prior_eps: float = 0.0
    label_reduction: str = "sum"
    ldam_max_m: float = 0.5
    ldam_scale: float = 30.0
    drw_epoch: int = -1
    drw_beta: float = 0.9999
    diversity_weight: float = 0.0
    diversity_temperature: float = 1.0
    diversity_reweight_factor: float = 0.05
    mixup_alpha: float = 0.0
    kd_prior: str = "train"

    def __post_init__(self) -> None:
        _choice("model.loss.reweight", self.reweight, (*REWEIGHT_RULES, "class_ema"))
        _choice("model.loss.contrastive", self.contrastive, CONTRASTIVE)
        _choice("model.loss.hcm_mask", self.hcm_mask, HCM_MASKS)
        _choice("model.loss.hcm_mining", self.hcm_mining, HCM_MINING)
        _choice("model.loss.kd_target", self.kd_target, KD_TARGETS)
        _choice("model.loss.reweight_target", self.reweight_target, REWEIGHT_TARGETS)
        _choice("model.loss.moco_ema_scope", self.moco_ema_scope, MOCO_EMA_SCOPES)
        _choice("model.loss.moco_update", self.moco_update, MOCO_UPDATES)
        _choice("model.loss.moco_init", self.moco_init, MOCO_INITS)
        _choice("model.loss.feat_distance", self.feat_distance, FEAT_DISTANCES)
        _choice("model.loss.feat_target", self.feat_target, FEAT_TARGETS)
        _choice("model.loss.label_loss", self.label_loss, LABEL_LOSSES)
        _choice("model.loss.label_reduction", self.label_reduction, EXPERT_REDUCTIONS)
        _choice("model.loss.kd_prior", self.kd_prior, KD_PRIORS)
        for key in ("prior_eps", "ldam_max_m", "mixup_alpha"):
            _positive(f"model.loss.{key}", getattr(self, key))
        for key in ("ldam_scale", "diversity_temperature"):
            _positive(f"model.loss.{key}", getattr(self, key), strict=True)
        if not 0 <= self.drw_beta < 1:
            raise ConfigError(f"model.loss.drw_beta={self.drw_beta} must be in [0, 1)")
        if not 0 <= self.diversity_reweight_factor < 1:
            raise ConfigError(
                f"model.loss.diversity_reweight_factor={self.diversity_reweight_factor} must be in [0, 1)"
            )
        if self.drw_epoch < -1:
            raise ConfigError(f"model.loss.drw_epoch={self.drw_epoch} must be -1 (never) or an epoch >= 0")
        for key in ("label_tau", "label_inverse_tau"):
            values = getattr(self, key)
            if values is not None and not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                raise ConfigError(f"model.loss.{key}={values!r} must be a list of numbers, one per expert")
        if self.label_inverse_tau is not None and self.label_tau is None:
            raise ConfigError("model.loss.label_inverse_tau needs model.loss.label_tau (one value per expert)")
        if self.terms is not None:
            self._check_terms()
        for key in ("kd_weight", "feat_weight", "con_weight", "hcm_weight", "hcm_kd_weight", "ramp_epochs", "tau"):
            _positive(f"model.loss.{key}", getattr(self, key))
        for key in ("kd_temperature", "con_temperature", "queue_size", "hcm_k"):
            _positive(f"model.loss.{key}", getattr(self, key), strict=True)
        if not 0 <= self.moco_momentum < 1:
            raise ConfigError(f"model.loss.moco_momentum={self.moco_momentum} must be in [0, 1)")
        if not 0 < self.reweight_min <= self.reweight_max:
            raise ConfigError("model.loss.reweight_min must be > 0 and <= model.loss.reweight_max")
        if self.reweight != "none" and not self.dist_head:
            raise ConfigError(
                f"model.loss.reweight={self.reweight!r} compares the label head with the distillation head, "
                "so it needs model.loss.dist_head=true (or set model.loss.reweight=none)"
            )
        if self.reweight != "none" and self.reweight_target != "dist" and not self.distill_into_label_head:
            raise ConfigError(
                f"model.loss.reweight_target={self.reweight_target!r} re-weights the distillation into the label "
                "heads, so it needs model.loss.distill_into_label_head=true (or set model.loss.reweight_target=dist)"
            )
        if self.hcm_kd_weight > 0 and not self.hcm:
            raise ConfigError(
                "model.loss.hcm_kd_weight > 0 distils between the experts' mined (HCM) logits, so it needs "
                "model.loss.hcm=true (or set model.loss.hcm_kd_weight=0)"
            )
        if self.kd_weight > 0 and not (self.dist_head or self.distill_into_label_head):
            raise ConfigError(
                "model.loss.kd_weight > 0 but there is no student: set model.loss.dist_head=true or "
                "model.loss.distill_into_label_head=true (or model.loss.kd_weight=0)"
            )

    def _check_terms(self) -> None:
        unknown = [t for t in self.terms if t not in LOSS_TERMS]
        if unknown or len(set(self.terms)) != len(self.terms) or "label" not in self.terms:
            raise ConfigError(
                f"model.loss.terms={list(self.terms)!r}: each of {list(LOSS_TERMS)} at most once, 'label' included"
                + (f" (unknown: {unknown})" if unknown else "")
            )
        for term in self.terms:
            key = TERM_WEIGHTS.get(term)
            if key is not None and getattr(self, key) == 0:
                raise ConfigError(f"model.loss.terms lists {term!r} but model.loss.{key}=0: drop it or set a weight")
        if "con" in self.terms and self.contrastive == "none":
            raise ConfigError("model.loss.terms lists 'con' but model.loss.contrastive=none (choose moco or supcon)")
        if ("hcm" in self.terms or "kd_hcm" in self.terms) and not self.hcm:
            raise ConfigError("model.loss.terms lists an HCM term but model.loss.hcm=false")
        if self.mixup_alpha > 0 and not set(self.terms) <= {"label", "diversity"}:
            raise ConfigError(
                f"model.loss.mixup_alpha={self.mixup_alpha} mixes the label and diversity terms only; "
                f"model.loss.terms={list(self.terms)!r} (set model.loss.mixup_alpha=0 or drop the other terms)"
            )

    def objective_terms(self, num_experts: int, contrastive: bool) -> list[str]:
        """The terms of the objective, in summation order: `terms` as given, or derived from the weights."""
        if self.terms is not None:
            return list(self.terms)
        multi = num_experts > 1
        on = {
            "label": True,
            "hcm": self.hcm,
            "kd_hcm": self.hcm and multi and self.hcm_kd_weight > 0,
            "kd": multi and self.kd_weight > 0,
            "feat": multi and self.feat_weight > 0,
            "con": contrastive,
            "diversity": multi and self.diversity_weight != 0,
        }
        terms = [t for t in LOSS_TERMS if on[t]]
        if self.mixup_alpha > 0 and not set(terms) <= {"label", "diversity"}:
            raise ConfigError(
                f"model.loss.mixup_alpha={self.mixup_alpha} mixes the label and diversity terms only, but the "
                f"objective has {terms} (set model.loss.mixup_alpha=0, or the other terms' weights to 0)"
            )
        return terms


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 2e-4
    base_batch_size: int | None = None

    def __post_init__(self) -> None:
        _choice("model.optim.name", self.name, ("sgd", "adamw"))
        _positive("model.optim.lr", self.lr, strict=True)


@dataclass
class ScheduleConfig:
    name: str = "multistep"
    warmup_epochs: float = 5.0
    milestones: list = field(default_factory=lambda: [320, 360])
    gamma: float = 0.1
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _choice("model.schedule.name", self.name, ("multistep", "cosine", "constant"))
        _positive("model.schedule.warmup_epochs", self.warmup_epochs)


@dataclass
class EvalConfig:
    many_threshold: int = 100
    few_threshold: int = 20
    n_bins: int = 15
    heads: str = "label"  # test-time aggregation: label | label+dist | expert<k>

    def __post_init__(self) -> None:
        Heads.parse(self.heads)  # the one parser of the value; ECLModule keeps the parsed one
        if self.few_threshold > self.many_threshold:
            raise ConfigError("model.eval.few_threshold must be <= model.eval.many_threshold")
