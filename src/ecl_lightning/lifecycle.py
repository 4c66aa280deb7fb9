"""Run lifecycle: where a resume starts from, checkpoints written atomically, and how a stopped run ends."""

from __future__ import annotations

import logging
import os
import signal
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from ecl_lightning.config import ConfigError

log = logging.getLogger("ecl_lightning")

# What a shell reports for a process ended by a signal: a preempted, cancelled or interrupted run must not look
# finished to a shell, a scheduler or a sweep script.
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM  # 143
SIGINT_EXIT_CODE = 128 + signal.SIGINT  # 130

# ckpt_path values that Lightning resolves itself (SLURM's auto-requeue checkpoint, the model registry).
_LIGHTNING_CKPT_NAMES = ("hpc", "registry")


def checkpoint_dir(cfg: DictConfig) -> Path:
    """The directory the run's ModelCheckpoint writes to (<run dir>/checkpoints unless configured otherwise)."""
    callback = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    return Path(callback.get("dirpath") or Path(cfg.paths.output_dir) / "checkpoints")


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """The checkpoint `ckpt_path` names, checked before anything is built: `last` is <checkpoint dir>/last.ckpt of
    this run directory and must exist (a resume that silently trains from scratch is the failure it prevents); a
    path must be a complete checkpoint file."""
    value = cfg.get("ckpt_path")
    if value is None or str(value) == "":
        return None
    value = str(value)
    if value in _LIGHTNING_CKPT_NAMES or value.startswith("registry:") or not _is_local_file_protocol(value):
        return value
    if value == "last":
        path = checkpoint_dir(cfg) / "last.ckpt"
        if not path.is_file():
            raise ConfigError(
                f"ckpt_path=last: no checkpoint at {path}. Name the run to continue with run_id=<its id> (or "
                "hydra.run.dir=<its directory>, hydra.sweep.dir=<its sweep> for a multirun), or give "
                "ckpt_path=<file>; leave ckpt_path out to start a new run."
            )
    else:
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"ckpt_path={value}: no such file. Give the path of a .ckpt file, or ckpt_path=last.")
    if zipfile.is_zipfile(path):
        return str(path)
    raise ConfigError(
        f"ckpt_path={path} is not a complete checkpoint (truncated by a crash or a full disk?): resume from another "
        f"one in {path.parent}."
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to `<name>.tmp`, fsyncs it and renames it over `<name>`: a crash or a full disk never
    leaves a truncated file under a checkpoint's name, and the previous file of that name stays whole."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(str(path)):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            cause = _os_error(err)  # torch's zip writer reports a failed write as a RuntimeError on closing
            if cause is None:
                raise
            raise OSError(
                cause.errno,
                f"could not write the checkpoint {path} ({cause.strerror or cause}); nothing was written under that "
                "name and the checkpoints saved before are intact",
            ) from err
        _fsync_dir(path.parent)


def _os_error(err: BaseException | None) -> OSError | None:
    """The OSError behind `err` (itself, or what it was raised from or while handling), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def exit_nonzero_when_stopped(trainer: L.Trainer, stage: str) -> Iterator[None]:
    """A stopped run must not look finished, and must say how to continue.

    SIGTERM (scancel, a preemption, `kill`) ends Lightning's loop with a SystemExit of code 0, SIGINT (Ctrl-C) with
    code 1 and Lightning's text only. Both log where the run stopped and its last checkpoint, and exit with 143 and
    130 (which also ends a Hydra multirun: the jobs after it do not start). Any other failure while training (a full
    disk, a killed loader worker) logs the same resume hint and is re-raised.
    """
    try:
        yield
    except SIGTERMException:
        _log_stop(trainer, stage, "Stopped by SIGTERM", SIGTERM_EXIT_CODE)
        raise SystemExit(SIGTERM_EXIT_CODE) from None
    except SystemExit as err:
        if not isinstance(err.__context__, KeyboardInterrupt):
            raise
        # Lightning ignores SIGINT from its graceful shutdown on; give Ctrl-C back its default meaning.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _log_stop(trainer, stage, "Stopped by SIGINT (Ctrl-C)", SIGINT_EXIT_CODE)
        raise SystemExit(SIGINT_EXIT_CODE) from None
    except KeyboardInterrupt:
        _log_stop(trainer, stage, "Stopped by SIGINT (Ctrl-C)", SIGINT_EXIT_CODE)
        raise SystemExit(SIGINT_EXIT_CODE) from None
    except Exception as err:
        if stage == "training":
            _log_stop(trainer, stage, f"Failed ({type(err).__name__})", None)
        raise


def _log_stop(trainer: L.Trainer, stage: str, what: str, code: int | None) -> None:
    if stage == "training":
        callback = trainer.checkpoint_callback
        last = callback.last_model_path if isinstance(callback, ModelCheckpoint) else ""
        kept = (
            f"the last checkpoint is {last} (resume with ckpt_path={last}); what was trained after it is not kept"
            if last and Path(last).is_file()
            else "no checkpoint had been saved yet"
        )
        where = f"training, in epoch {trainer.current_epoch} (global step {trainer.global_step})"
    else:
        kept, where = "no metrics.json is written", stage
    ending = f" Exiting with code {code}." if code is not None else ""
    log.error("%s while %s: %s.%s", what, where, kept, ending)
