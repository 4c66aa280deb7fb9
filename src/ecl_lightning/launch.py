"""Every check made before training starts, beyond the config values (validate.py): the launch mix (Hydra launcher,
strategy, SLURM sizes), what the built Trainer will really do (precision, SyncBatchNorm on CPU), and whether an
optimising sweeper will get its metric. Each raises ConfigError naming the key, before data or weights are touched."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import ParallelStrategy
from omegaconf import DictConfig, ListConfig

from ecl_lightning.config import ConfigError

log = logging.getLogger("ecl_lightning")


def check_launch(cfg: DictConfig) -> None:
    """Refuse launch mixes known to break before anything is built: in a Hydra multirun on the basic (in-process)
    launcher, Lightning's `ddp` starts each child rank by re-running the command, so every child re-runs the whole
    sweep and writes a second sweep folder; and under SLURM the job's task counts must match the Trainer's. A GPU
    trainer on a machine without one (or with fewer than trainer.devices) is refused here too."""
    from hydra.core.hydra_config import HydraConfig

    _check_gpus_present(cfg)

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    strategy = str(cfg.trainer.get("strategy", "auto"))
    devices = cfg.trainer.get("devices", 1)
    many_devices = devices in (-1, "auto", "-1") or (isinstance(devices, int) and devices > 1)
    in_process_launcher = "BasicLauncher" in str(hc.launcher.get("_target_", ""))
    in_process_ddp = strategy.startswith("ddp") and strategy != "ddp_spawn" and many_devices
    multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
    if multirun and in_process_launcher and in_process_ddp:
        raise ConfigError(
            f"trainer.strategy={strategy} with several devices inside a Hydra multirun on the basic launcher "
            "re-runs the sweep in each child process. Use one device per job (trainer.devices=1), "
            "trainer.strategy=ddp_spawn, or the SLURM launcher (hydra/launcher=slurm)."
        )
    if "SlurmLauncher" in str(hc.launcher.get("_target_", "")) and strategy.startswith("ddp"):
        _check_slurm_sizes(cfg, hc.launcher)


def _check_gpus_present(cfg: DictConfig) -> None:
    """trainer.accelerator=gpu|cuda needs CUDA devices here (Lightning says so only as a traceback from Trainer())."""
    import torch

    accelerator = cfg.trainer.get("accelerator")
    if not isinstance(accelerator, str) or accelerator not in ("gpu", "cuda"):
        return
    if accelerator == "gpu" and torch.backends.mps.is_available():  # Lightning's `gpu` is MPS on Apple silicon
        return
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    devices = cfg.trainer.get("devices", 1)
    if isinstance(devices, int) and devices > 0:
        needed = devices
    else:  # a list of device ids, or -1 / "auto": at least one
        needed = len(devices) if isinstance(devices, list | ListConfig) else 1
    if available < needed:
        have = "no CUDA GPU" if available == 0 else f"{available} CUDA GPU(s)"
        raise ConfigError(
            f"trainer.accelerator={accelerator} with trainer.devices={devices}, but this machine has {have}: "
            "use trainer=cpu (or trainer=ddp_cpu) here, or run where the GPUs are"
        )


def _check_slurm_sizes(cfg: DictConfig, launcher: DictConfig) -> None:
    """Under SLURM, Lightning takes its ranks from the SLURM tasks: one task per device on each of num_nodes nodes."""
    devices, nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes", 1)
    tasks, slurm_nodes = launcher.get("tasks_per_node", 1), launcher.get("nodes", 1)
    if not isinstance(devices, int) or devices < 1 or devices != tasks or nodes != slurm_nodes:
        raise ConfigError(
            f"trainer.devices={devices}, trainer.num_nodes={nodes} do not match the SLURM job "
            f"(hydra.launcher.tasks_per_node={tasks}, hydra.launcher.nodes={slurm_nodes}): DDP under SLURM runs one "
            "task per device. Use hydra/launcher=slurm, which sizes the job from trainer.devices (a number, not -1) "
            "and trainer.num_nodes."
        )


def check_built_trainer(cfg: DictConfig, trainer: L.Trainer, has_val: bool) -> None:
    """The checks that need the built Trainer (its accelerator, strategy, callbacks), made before fit. The config
    values of the trainer group are checked before anything is built, by validate.check_trainer."""
    check_precision(cfg, trainer)
    check_sync_batchnorm(cfg, trainer)
    check_optimized_metric(cfg, has_val, trainer)


def check_precision(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Say, under the config key, what Lightning does with fp16 mixed precision on a CPU (it runs bf16 instead)."""
    asked = str(cfg.trainer.get("precision"))
    if asked in ("16-mixed", "16") and isinstance(trainer.accelerator, CPUAccelerator):
        log.warning(
            "trainer.precision=%s: fp16 mixed precision needs a GPU, so on CPU Lightning trains with %s instead. "
            "Set trainer.precision=bf16-mixed (or 32-true) to ask for what runs.",
            asked, trainer.precision,
        )  # fmt: skip


def check_sync_batchnorm(cfg: DictConfig, trainer: L.Trainer) -> None:
    """torch's SyncBatchNorm has no CPU implementation: DDP would refuse the model only once fit has started."""
    parallel = isinstance(trainer.strategy, ParallelStrategy)
    if cfg.trainer.get("sync_batchnorm") and parallel and isinstance(trainer.accelerator, CPUAccelerator):
        raise ConfigError(
            f"trainer.sync_batchnorm=true with strategy={cfg.trainer.get('strategy')} on CPU: torch's SyncBatchNorm "
            "only runs on GPUs. Set trainer.sync_batchnorm=false (each process keeps its own BatchNorm statistics, "
            "as in most DDP recipes) or train on GPUs (trainer=ddp)."
        )


def optimizing_sweeper() -> str | None:
    """The sweeper that reads the value `python -m ecl_lightning` returns (Optuna, Nevergrad, ...), else None: a
    single run and Hydra's basic sweeper (`-m a=1,2`) ignore it."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    target = str((hc.get("sweeper") or {}).get("_target_", ""))
    multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
    return target if multirun and target and not target.endswith("BasicSweeper") else None


def missing_optimized_metric(cfg: DictConfig, has_val: bool, trainer: L.Trainer) -> str | None:
    """Why this run will not have `optimized_metric` (None when it will, or when that cannot be told in advance)."""
    name = str(cfg.get("optimized_metric") or "")
    if not name.startswith(("val/", "test/")):
        return None
    if name.startswith("test/"):
        return None if cfg.get("test", True) else "test=false"
    if not cfg.get("train", True):
        return "train=false (no validation runs)"
    if not has_val:
        return f"{cfg.data._target_.rsplit('.', 1)[-1]} has no validation split"
    if trainer.limit_val_batches == 0:
        return "trainer.limit_val_batches=0"
    if name == "val/acc_best":
        callback = trainer.checkpoint_callback
        if not isinstance(callback, ModelCheckpoint) or not callback.monitor:
            return "no checkpoint callback monitors a val metric (callbacks=none or a debug preset)"
        if trainer.fast_dev_run:
            return "fast_dev_run (debug=fdr) saves no checkpoints"
    return None


def check_optimized_metric(cfg: DictConfig, has_val: bool, trainer: L.Trainer) -> None:
    """Before training: a sweeper that optimises `optimized_metric` must get it, else stop here, naming the key. A
    run whose value nobody reads (a single run, a basic `-m` sweep) goes on and returns none (see __main__)."""
    sweeper = optimizing_sweeper()
    why = missing_optimized_metric(cfg, has_val, trainer) if sweeper else None
    if why is not None:
        name = cfg.optimized_metric
        raise ConfigError(
            f"optimized_metric={name}: this run will not have it ({why}), and the sweeper "
            f"{sweeper.rsplit('.', 1)[-1]} needs it. Set optimized_metric to a metric the run has (a val/ metric on "
            "data with a val split; the test split is never used for selection), or run without the sweeper."
        )
