"""The run plan: every decision and check made before a training run is built, in one place.

`plan(cfg, data, checkpoint)` reads the composed config, what the DataModule says about its data (`DataInfo`) and
the header of the checkpoint a fit resumes from. It raises ConfigError (CheckpointError for a checkpoint) naming the
key, or returns a frozen `RunPlan`: what the run will do other than the config says (validation off and the
checkpoint monitor dropped for data without a val split, the learning-rate monitor dropped without a logger, the
checkpoint plugin), the resolved resume path and the test-time heads. It changes nothing; `run_config` applies the
plan to a copy of the config, which train.py instantiates, saves and logs. The checks that need the built Trainer
(what Lightning resolved for precision and strategy) are `launch.check_built_trainer`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict

from ecl_lightning.checkpoint import CheckpointError, check_data_fits, check_model_fits, read_checkpoint
from ecl_lightning.config import ConfigError
from ecl_lightning.heads import Heads
from ecl_lightning.launch import check_launch
from ecl_lightning.lifecycle import resolve_ckpt_path
from ecl_lightning.loggers import check_logger_packages
from ecl_lightning.validate import check_config

if TYPE_CHECKING:
    from ecl_lightning.data.interface import LongTailData
    from ecl_lightning.module import ECLModule

log = logging.getLogger("ecl_lightning")

# The checkpoint callback's file name where there is no val metric to pick the best epoch by.
LAST_EPOCH_FILENAME = "last_epoch_{epoch:03d}"


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class DataInfo:
    """What the plan needs to know of the data: read from the DataModule (`of`) without loading a batch."""

    name: str  # as the user picks it (`fmnist_lt`), for messages
    target: str  # the DataModule's class (`data._target_`)
    num_classes: int
    in_chans: int
    image_size: int  # the input side the model is built for (DataModule.input_spec())
    class_counts: tuple[int, ...]  # training images per class, long-tailed
    has_val: bool
    class_names: tuple[str, ...] | None = None

    @classmethod
    def of(cls, datamodule: LongTailData, name: str, target: str) -> DataInfo:
        names = getattr(datamodule, "class_names", None)
        return cls(
            name=name,
            target=target,
            num_classes=int(datamodule.num_classes),
            in_chans=int(datamodule.in_chans),
            image_size=int(datamodule.input_spec().image_size),
            class_counts=tuple(int(c) for c in datamodule.class_counts),
            has_val=bool(datamodule.has_val),
            class_names=tuple(str(n) for n in names) if names is not None else None,
        )


@dataclass(frozen=True)
class RunPlan:
    """Every decision taken before a run is built; `run_config` applies the overrides, train.build instantiates."""

    data: DataInfo
    heads: Heads
    ckpt_path: str | None  # what trainer.fit resumes from: `last` resolved to its file; Lightning's own names as given
    resume: Path | None  # that file when this package checks it against the data and the model, else None
    trainer_overrides: Mapping[str, Any] = field(default_factory=dict)  # trainer.<key> -> the value the run uses
    callback_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # callbacks.<name>.<key>
    dropped_callbacks: tuple[str, ...] = ()  # callbacks.<name> that are not built
    atomic_checkpoints: bool = True  # write checkpoints with AtomicCheckpointIO (unless trainer.plugins is set)
    notes: tuple[str, ...] = ()  # what the plan changed and why, for the log

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """The data's values the model config is instantiated with."""
        names = {"class_names": list(self.data.class_names)} if self.data.class_names is not None else {}
        return {
            "num_classes": self.data.num_classes,
            "in_chans": self.data.in_chans,
            "img_size": self.data.image_size,
            "class_counts": list(self.data.class_counts),
            **names,
        }


def data_name(cfg: DictConfig) -> str:
    """The data config's name as the user picks it (`cifar10_lt`), else its DataModule class."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("data")
        if choice:
            return str(choice)
    return str(cfg.data.get("_target_", "?")).rsplit(".", 1)[-1]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as it is; a run directory (or its checkpoints/): the best-by-val checkpoint
    (epoch_*.ckpt, kept alone by the default callbacks), else last.ckpt. Neither: CheckpointError naming the path."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if folder.is_dir():
        best = sorted(folder.glob("epoch_*.ckpt"))
        if len(best) == 1:
            return best[0]
        if (folder / "last.ckpt").is_file():
            return folder / "last.ckpt"
        raise CheckpointError(
            f"ckpt_path={path}: {len(best)} epoch_*.ckpt and no last.ckpt in {folder}; pass the checkpoint file"
        )
    raise CheckpointError(f"ckpt_path={path} does not exist: give a .ckpt file or the directory of a run")


@dataclass(frozen=True)
class CheckpointPlan:
    """What evaluate, predict and export decide alike before building anything from a trained checkpoint."""

    ckpt_path: Path  # the file: a run directory resolved to its best-by-val checkpoint, else last.ckpt
    checkpoint: Mapping[str, Any]  # read once (weights memory-mapped): a truncated or foreign file stopped here
    data: DictConfig  # the data it is evaluated on: `data=` given, else the data config of the checkpoint's run
    data_name: str  # for messages
    heads: Heads  # the test-time heads (`heads=`)

    @property
    def hparams(self) -> Mapping[str, Any]:
        return self.checkpoint["hyper_parameters"]

    @property
    def eval_config(self) -> dict[str, Any]:
        """The module's `eval` options: the checkpoint's own, with the heads asked for."""
        return dict(self.hparams.get("eval") or {}, heads=str(self.heads))


def plan_checkpoint(cfg: DictConfig) -> CheckpointPlan:
    """The shared first stage of evaluate, predict and export: resolve and read `cfg.ckpt_path`, parse `cfg.heads`,
    pick the data config. Raises CheckpointError / ConfigError naming the key; builds nothing."""
    heads = Heads.parse(str(cfg.get("heads") or "label"), key="heads")  # a bad value is named before any file read
    ckpt = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = read_checkpoint(ckpt)
    data = data_config(cfg, ckpt)
    name = data_name(cfg) if cfg.get("data") is not None else str(data.get("_target_")).rsplit(".", 1)[-1]
    return CheckpointPlan(ckpt, checkpoint, data, name, heads)


def data_config(cfg: DictConfig, ckpt: Path) -> DictConfig:
    """The data a checkpoint is evaluated on (evaluate, predict, export): the data config given on the command line,
    else the one of the run that wrote the checkpoint."""
    if cfg.get("data") is not None:
        return cfg.data
    run_yaml = ckpt.resolve().parent.parent / "config.yaml"
    if not run_yaml.is_file():
        raise ConfigError(f"no data given and no run config at {run_yaml}: pass data=<name> (and data.data_dir=...)")
    data = OmegaConf.load(run_yaml).data
    if cfg.get("data_dir"):
        data.data_dir = cfg.data_dir
    return data


def resume_file(cfg: DictConfig, ckpt_path: str | None) -> Path | None:
    """The checkpoint file a fit resumes from (`ckpt_path` after `resolve_ckpt_path`), to check before building;
    None without one, with train=false, or for Lightning's own names (`hpc`, `registry:...`)."""
    if not ckpt_path or not cfg.get("train", True):
        return None
    path = Path(str(ckpt_path)).expanduser()
    return path if path.is_file() else None


def check_before_data(cfg: DictConfig) -> dict[str, Any] | None:
    """The checks on the config alone (values, launch mix) and on the checkpoint a fit resumes from, before any data
    is read; returns that checkpoint (weights memory-mapped, not read) or None."""
    check_config(cfg)
    check_logger_packages(cfg)  # logger=tensorboard / mlflow without the `loggers` extra
    check_launch(cfg)
    resume = resume_file(cfg, resolve_ckpt_path(cfg))
    return read_checkpoint(resume) if resume is not None else None


def plan(cfg: DictConfig, data: DataInfo, checkpoint: dict[str, Any] | None = None) -> RunPlan:
    """Check the config against itself, the launcher, the data and the resumed checkpoint; decide what the run
    changes. `checkpoint` is the one `check_before_data` returned (read here when not given). Changes nothing."""
    check_config(cfg)  # repeated from check_before_data (pure and fast), so a plan never comes from unchecked values
    check_logger_packages(cfg)
    check_launch(cfg)
    ckpt_path = resolve_ckpt_path(cfg)  # ckpt_path=last -> the file; a missing or truncated one stops here
    resume = resume_file(cfg, ckpt_path)
    if resume is not None:
        check_data_fits(checkpoint or read_checkpoint(resume), resume, data.num_classes, data.in_chans, data.name)
    counts = data.class_counts
    batch_size = cfg.data.get("batch_size")
    if isinstance(batch_size, int) and sum(counts) < batch_size:  # drop_last would leave an empty epoch
        raise ConfigError(
            f"data.batch_size={batch_size} is larger than the long-tailed train set ({sum(counts)} images): "
            "lower data.batch_size (or raise data.n_max)"
        )
    notes = [
        f"Long-tailed train set: {sum(counts)} images, {len(counts)} classes, counts {max(counts)} ... {min(counts)}"
    ]

    trainer_overrides: dict[str, Any] = {}
    callback_overrides: dict[str, Mapping[str, Any]] = {}
    callbacks = cfg.get("callbacks") or {}
    if not data.has_val:
        # No val split without changing the benchmark: train blind, report the last epoch (docs/method.md 5).
        notes.append(f"{data.target} has no validation split: the reported test numbers are the last epoch's.")
        trainer_overrides.update(limit_val_batches=0, num_sanity_val_steps=0)
        if callbacks.get("model_checkpoint"):
            callback_overrides["model_checkpoint"] = _frozen({"monitor": None, "filename": LAST_EPOCH_FILENAME})

    dropped = []
    if not _has_logger(cfg):
        # LearningRateMonitor refuses a Trainer without a logger, and only at on_train_start (after data set-up).
        dropped = [name for name, conf in callbacks.items() if _is_lr_monitor(conf)]
        if dropped:
            notes.append("No logger (~logger): no learning-rate monitor either (it logs through one); see train.log.")

    return RunPlan(
        data=data,
        heads=Heads.parse(OmegaConf.select(cfg, "model.eval.heads", default=None) or "label"),
        ckpt_path=ckpt_path,
        resume=resume,
        trainer_overrides=_frozen(trainer_overrides),
        callback_overrides=_frozen(callback_overrides),
        dropped_callbacks=tuple(dropped),
        # Checkpoints written atomically (a crash or a full disk leaves no truncated file), unless plugins are set.
        atomic_checkpoints=not cfg.trainer.get("plugins"),
        notes=tuple(notes),
    )


def _has_logger(cfg: DictConfig) -> bool:
    """Whether the logger group builds a logger (as instantiate_loggers: entries with a `_target_`)."""
    return any(isinstance(conf, DictConfig) and "_target_" in conf for conf in (cfg.get("logger") or {}).values())


def _is_lr_monitor(conf: Any) -> bool:
    from hydra.utils import get_class
    from lightning.pytorch.callbacks import LearningRateMonitor

    if not isinstance(conf, DictConfig) or "_target_" not in conf:
        return False
    try:
        return issubclass(get_class(str(conf._target_)), LearningRateMonitor)
    except Exception:  # a target that cannot be imported: its instantiation names the problem
        return False


def check_resumed_weights(run: RunPlan, checkpoint: dict[str, Any] | None, model: ECLModule) -> None:
    """The built model takes the weights of the checkpoint it resumes from (the one check that needs the model)."""
    if run.resume is not None:
        check_model_fits(checkpoint or read_checkpoint(run.resume), run.resume, model, dict(model.hparams))


def run_config(cfg: DictConfig, run: RunPlan) -> DictConfig:
    """A copy of `cfg` with the plan applied (the resolved ckpt_path, the trainer and callback overrides, the W&B
    logger set-up): what the run instantiates (its callbacks: `callbacks_config`), and what config.yaml and the
    loggers record. `cfg` is left as is."""
    from ecl_lightning.loggers import configure_wandb, reuse_mlflow_run_id, reuse_wandb_run_id

    config = copy.deepcopy(cfg)
    with open_dict(config):
        config.ckpt_path = run.ckpt_path
        for key, value in run.trainer_overrides.items():
            config.trainer[key] = value
        for name, values in run.callback_overrides.items():
            for key, value in values.items():
                config.callbacks[name][key] = value
    configure_wandb(config)  # offline without an API key, never log_model offline
    reuse_wandb_run_id(config)  # a resumed run continues its W&B run
    reuse_mlflow_run_id(config)  # ... and its MLflow run
    return config


def callbacks_config(config: DictConfig, run: RunPlan) -> DictConfig | None:
    """The callbacks group the run builds: `config.callbacks` less the plan's `dropped_callbacks`."""
    callbacks = config.get("callbacks")
    if not callbacks or not run.dropped_callbacks:
        return callbacks
    kept = OmegaConf.to_container(callbacks, resolve=True)  # resolved here: a new root has no `paths` to refer to
    return OmegaConf.create({k: v for k, v in kept.items() if k not in run.dropped_callbacks})
