"""What the command-line entry points share: a user-facing error is one message on stderr and exit code 2 (no
traceback of package code), and an unwritable run directory is named before Hydra configures its log file.

Light on imports: Hydra instantiates `RunDirCheck` before the task, also for `--help`-fast paths.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

# The exit code of a run refused before training for a user error (a wrong key, value, path, dataset or checkpoint),
# as argparse and most Unix tools use for usage errors.
USAGE_EXIT_CODE = 2

log = logging.getLogger("ecl_lightning")


class PathNotFoundError(FileNotFoundError):
    """A file or folder given on the command line does not exist; the message names the key and what to give."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors whose message is the whole story: config, path, dataset and checkpoint errors."""
    from ecl_lightning.config import ConfigError  # CheckpointError is one
    from ecl_lightning.data.errors import DatasetFormatError, DatasetNotFoundError

    return ConfigError, PathNotFoundError, DatasetNotFoundError, DatasetFormatError


def exit_with_message(message: str) -> None:
    """Print `Error: message` on stderr, keep it in the run's log file, exit with USAGE_EXIT_CODE."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers + log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    print(f"Error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(USAGE_EXIT_CODE)


@contextmanager
def user_errors_as_messages() -> Iterator[None]:
    """Turn a user-facing error into its message and exit code 2; other exceptions keep their traceback, and
    HYDRA_FULL_ERROR=1 keeps it for all (for debugging the package itself)."""
    try:
        yield
    except user_errors() as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        exit_with_message(f"{_job_prefix()}{err}")


def _job_prefix() -> str:
    """`job 3 (seed=1 model=ncl): ` inside a multirun, so the message says which job of the sweep stopped it."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    hc = HydraConfig.get()
    if hc.mode is None or hc.mode.name != "MULTIRUN":
        return ""
    return f"job {hc.job.get('num', '?')} ({' '.join(hc.overrides.task)}): "


def unwritable(directory: Path, log_file: Path | None = None) -> str | None:
    """Why the run directory (made if missing) or its log file cannot be written, or None."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        return f"cannot write in {existing} ({err.strerror or err})"
    if log_file is not None and log_file.exists():
        if log_file.is_dir():
            return f"the log file {log_file} is a directory"
        if not os.access(log_file, os.W_OK):
            return f"cannot write the log file {log_file} (permission denied)"
    return None


def check_output_file(path: Path, key: str = "output") -> None:
    """Raise ConfigError naming `key=path` when the file cannot be written (its folder cannot be made or written
    in, or the path is a folder), before any work whose result it would hold."""
    from ecl_lightning.config import ConfigError

    if path.is_dir():
        raise ConfigError(f"{key}={path} is a folder: give the path of a file (in it: {key}={path}/<name>)")
    problem = unwritable(path.parent)
    if problem is None and path.exists() and not os.access(path, os.W_OK):
        problem = "permission denied"
    if problem:
        raise ConfigError(f"{key}={path} cannot be written: {problem}; give a path in a writable folder")


class RunDirCheck(Callback):
    """Hydra callback: refuse an unwritable run (or sweep) directory before Hydra configures its log file there,
    which would fail with `ValueError: Unable to configure handler 'file'` and the real cause only in the chain."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    def _check(self, config: DictConfig, key: str) -> None:
        from hydra.core.hydra_config import HydraConfig

        hydra_config = HydraConfig.instance()
        previous = hydra_config.cfg
        try:
            hydra_config.set_config(config)  # for `${hydra:...}` in the directory (Hydra sets it itself just after)
            directory = Path(str(OmegaConf.select(config, key))).absolute()
            resolved = copy.deepcopy(config)
            with read_write(resolved.hydra), open_dict(resolved.hydra):
                resolved.hydra.runtime.output_dir = str(directory)
            filename = OmegaConf.select(resolved, "hydra.job_logging.handlers.file.filename", default=None)
        except Exception:  # an interpolation we cannot resolve here: Hydra will say so itself
            return
        finally:
            hydra_config.cfg = previous
        log_file = Path(filename) if filename and key == "hydra.run.dir" else None
        problem = unwritable(directory, log_file)
        if problem:
            print(
                f"Error: the run directory {directory} ({key}) cannot be written: {problem}. Fix that, or "
                f"write the run elsewhere with paths.log_dir=<dir> (or {key}=<dir>).",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(USAGE_EXIT_CODE)
