"""Helpers of the entry points: launch checks, instantiation, run-directory outputs, the results table."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from ecl_lightning.config import ConfigError

log = logging.getLogger("ecl_lightning")

SPLIT_COLUMNS = ("acc", "acc_many", "acc_medium", "acc_few", "ece", "nll")


def check_launch(cfg: DictConfig) -> None:
    """Refuse launch mixes known to break before anything is built (STYLE pitfall 2)."""
    from hydra.core.hydra_config import HydraConfig

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


def configure_wandb(cfg: DictConfig) -> None:
    """Run W&B offline when no API key is available, and never with log_model offline (STYLE pitfall 12)."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is None:
        return
    has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
    with open_dict(cfg):
        if not has_key or os.environ.get("WANDB_MODE") == "offline":
            if not wandb_cfg.get("offline", False):
                log.warning(
                    "No W&B API key found: logging offline into the run directory. Upload later with "
                    "`wandb sync %s/wandb/offline-run-*`.",
                    cfg.paths.output_dir,
                )
            wandb_cfg.offline = True
        if wandb_cfg.get("offline", False):
            wandb_cfg.log_model = False


def _netrc_has_wandb() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


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


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_resolved_config(cfg: DictConfig, output_dir: Path) -> None:
    """Write the fully resolved config as <run dir>/config.yaml."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def results_table(metrics: dict[str, float], stage: str = "test") -> str:
    """Plain-text table: one row per head (ensemble, expert1..K), columns acc/many/medium/few in %, ECE %, NLL."""
    heads = ["ensemble"] + sorted(
        {k.split("/")[1] for k in metrics if k.count("/") == 2 and k.startswith(f"{stage}/")},
        key=lambda h: int(h.removeprefix("expert")) if h.removeprefix("expert").isdigit() else 0,
    )
    header = ["head", "acc %", "many %", "medium %", "few %", "ECE %", "NLL"]
    rows = [header]
    for head in heads:
        prefix = f"{stage}/" if head == "ensemble" else f"{stage}/{head}/"
        row = [head]
        for col in SPLIT_COLUMNS:
            value = metrics.get(prefix + col)
            if value is None:
                row.append("-")
            elif col == "nll":
                row.append(f"{value:.3f}")
            else:
                row.append(f"{100 * value:.2f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_test_outputs(output_dir: Path, metrics: dict[str, float], model, class_counts, tested: str) -> None:
    """metrics.json (flat), per_class.json (per-class accuracy of each head, class names where the checkpoint has
    them) and the results table in the log."""
    write_json(output_dir / "metrics.json", metrics)
    names = model.hparams.get("class_names")
    write_json(
        output_dir / "per_class.json",
        {
            "class_counts": list(class_counts),
            **({"class_names": list(names)} if names else {}),
            "tested": tested,
            **model.test_per_class,
        },
    )
    write_json(output_dir / "reliability.json", model.test_reliability)
    try:
        from ecl_lightning.plots import save_run_plots

        save_run_plots(output_dir)
    except Exception as err:  # a plot must never cost a finished run its numbers
        log.warning("Could not draw the run's plots: %s", err)
    log.info("Test results (%s) -> %s\n%s", tested, output_dir / "metrics.json", results_table(metrics))
