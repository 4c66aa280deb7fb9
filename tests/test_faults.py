"""Fault injection: a run stopped by SIGTERM or SIGINT (mid-epoch, mid-validation), by a checkpoint write that fails
half-way, or by a killed loader worker says how it stopped and which checkpoint to resume from; resumed from that
checkpoint, it ends with the same weights, optimiser state and test numbers as a run that was never stopped."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import ecl_lightning.train as train_module
from ecl_lightning.train import train
from helpers import assert_same_run, compose_cfg, last_state, resume_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread", "restore_signals")

FSIZE = resource.getrlimit(resource.RLIMIT_FSIZE)


@pytest.fixture
def restore_signals():
    """Lightning ignores SIGINT after a Ctrl-C; a file-size limit must not outlive its test."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGXFSZ)}
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, FSIZE)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


class Fault(Callback):
    """Calls `action` once: in epoch `epoch` at training batch `batch` (stage "train"), at validation batch `batch`
    (stage "val", not the sanity check), or at the end of the epoch's training, before its checkpoints are written
    (stage "epoch_end": Lightning runs ModelCheckpoint after the other callbacks)."""

    def __init__(self, stage: str, action: Callable[[], None], epoch: int = 1, batch: int = 1) -> None:
        self.stage, self.action, self.epoch, self.batch, self.done = stage, action, epoch, batch, False

    def _maybe(self, trainer, stage: str, batch_idx: int = -1) -> None:
        if self.done or stage != self.stage or trainer.current_epoch != self.epoch or trainer.sanity_checking:
            return
        if stage == "epoch_end" or batch_idx == self.batch:
            self.done = True
            self.action()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._maybe(trainer, "train", batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._maybe(trainer, "val", batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._maybe(trainer, "epoch_end")


def send(sig: signal.Signals) -> Callable[[], None]:
    return lambda: os.kill(os.getpid(), sig)


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test: Lightning sets SIGINT to "ignore" once it handled a KeyboardInterrupt,
    and an earlier test in the same pytest process can leave it so; a Ctrl-C must then reach this run."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def kill_loader_workers() -> None:
    """SIGKILL the DataLoader worker processes (this epoch's training one, and a validation one not yet reaped), as
    the kernel's OOM killer would."""
    workers = multiprocessing.active_children()
    assert workers
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)


def fill_the_disk(limit: int) -> Callable[[], None]:
    """From now on a write past `limit` bytes of any file fails (EFBIG) half-way through, as a full disk's ENOSPC
    does: a checkpoint write starts, writes `limit` bytes, and fails."""

    def action() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel ends the process instead of failing the write
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return action


def with_fault(monkeypatch, fault: Fault) -> None:
    real = train_module.instantiate_callbacks
    monkeypatch.setattr(train_module, "instantiate_callbacks", lambda cfg: [*real(cfg), fault])


WORKER = ["data.num_workers=1"]  # data.persistent_workers=false (tiny_overrides): a new worker each epoch


def reference_run(fmnist_dir: Path, run_dir: Path, extra: list[str]) -> tuple[dict, dict]:
    metrics = train(compose_cfg(resume_overrides(fmnist_dir, 2) + extra, run_dir))
    return metrics, last_state(run_dir)


@pytest.fixture(scope="module")
def one_go(fmnist_dir, tmp_path_factory) -> tuple[dict, dict]:
    """Two epochs, never stopped: (metrics, last.ckpt)."""
    torch.set_num_threads(1)
    return reference_run(fmnist_dir, tmp_path_factory.mktemp("one_go"), [])


def stop_then_resume(monkeypatch, fmnist_dir: Path, tmp_path: Path, fault: Fault, extra: list[str], same_dir: bool):
    """Run 2 epochs with `fault`; return (what it raised, the log) and the metrics of the run resumed from last.ckpt
    (in the same run directory with ckpt_path=last, or in a new one with ckpt_path=<file>)."""
    stopped = tmp_path / "run"
    with_fault(monkeypatch, fault)
    with pytest.raises(BaseException) as raised:
        train(compose_cfg(resume_overrides(fmnist_dir, 2) + extra, stopped))
    assert fault.done
    monkeypatch.undo()
    resource.setrlimit(resource.RLIMIT_FSIZE, FSIZE)
    last = stopped / "checkpoints" / "last.ckpt"
    assert last_state(stopped)["epoch"] == 0  # every fault hits epoch 1: epoch 0's checkpoint is the last one
    assert not (stopped / "metrics.json").exists()  # a stopped run writes no numbers that look like a finished run's
    resumed = stopped if same_dir else tmp_path / "resumed"
    ckpt = "last" if same_dir else str(last)
    metrics = train(compose_cfg(resume_overrides(fmnist_dir, 2) + extra + [f"ckpt_path={ckpt}"], resumed))
    return raised.value, metrics, last_state(resumed), last


@pytest.mark.parametrize(
    "sig, stage, same_dir",
    [
        (signal.SIGTERM, "train", True),
        (signal.SIGTERM, "val", False),
        (signal.SIGINT, "train", False),
        (signal.SIGINT, "val", True),
    ],
    ids=["sigterm-mid-epoch", "sigterm-mid-validation", "sigint-mid-epoch", "sigint-mid-validation"],
)
def test_signal_stops_with_its_exit_code_and_the_resumed_run_equals_one_go(
    sig, stage, same_dir, one_go, fmnist_dir, tmp_path, monkeypatch, caplog, default_sigint
):
    # SIGTERM: Lightning alone exits 0; SIGINT: 1, with its own text only. Both now say where to resume from.
    fault = Fault(stage, send(sig), batch=1 if stage == "train" else 0)  # 2 val batches: stop after the first
    with caplog.at_level(logging.ERROR, logger="ecl_lightning"):
        stop, metrics, ckpt, last = stop_then_resume(monkeypatch, fmnist_dir, tmp_path, fault, [], same_dir)
    assert isinstance(stop, SystemExit) and stop.code == 128 + sig == {signal.SIGTERM: 143, signal.SIGINT: 130}[sig]
    name = "SIGTERM" if sig == signal.SIGTERM else "SIGINT (Ctrl-C)"
    assert f"Stopped by {name} while training, in epoch 1" in caplog.text
    assert f"resume with ckpt_path={last}" in caplog.text and f"Exiting with code {128 + sig}" in caplog.text
    assert_same_run(metrics, ckpt, one_go)


def test_failing_checkpoint_write_leaves_no_truncated_file_and_the_run_resumes(
    one_go, fmnist_dir, tmp_path, monkeypatch, caplog
):
    # The disk fills while epoch 1's checkpoint is written: Lightning wrote straight to epoch_001.ckpt and left a
    # truncated file under that name (a later ckpt_path= to it failed in torch's zip reader).
    fault = Fault("epoch_end", lambda: fill_the_disk(_half_a_checkpoint(tmp_path))())
    with caplog.at_level(logging.ERROR, logger="ecl_lightning"):
        stop, metrics, ckpt, last = stop_then_resume(monkeypatch, fmnist_dir, tmp_path, fault, [], same_dir=False)
    assert isinstance(stop, OSError) and "could not write the checkpoint" in str(stop)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert str(checkpoints / "epoch_001.ckpt") in str(stop) and "checkpoints saved before are intact" in str(stop)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]  # no part, no .tmp
    assert "Failed (OSError) while training, in epoch 1" in caplog.text and f"ckpt_path={last}" in caplog.text
    assert_same_run(metrics, ckpt, one_go)


def test_atomic_checkpoint_io_keeps_the_previous_file_when_the_disk_is_full(tmp_path, monkeypatch):
    # ENOSPC half-way through torch.save: nothing under the checkpoint's name but the whole previous file, no .tmp,
    # and an error that names the file, keeps the errno and says that the earlier checkpoints are intact.
    from ecl_lightning.lifecycle import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 0, "weights": torch.zeros(1000)}, path)
    previous = path.read_bytes()
    real_save = torch.save

    def disk_full(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.truncate(file.tell() // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError) as err:
        io.save_checkpoint({"epoch": 1, "weights": torch.ones(1000)}, path)
    assert err.value.errno == errno.ENOSPC and str(path) in str(err.value) and "No space left" in str(err.value)
    assert "checkpoints saved before are intact" in str(err.value)
    assert path.read_bytes() == previous and [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 0


def _half_a_checkpoint(tmp_path: Path) -> int:
    return (tmp_path / "run" / "checkpoints" / "epoch_000.ckpt").stat().st_size // 2


def test_killed_loader_worker_fails_and_the_resumed_run_equals_one_go(fmnist_dir, tmp_path, monkeypatch, caplog):
    reference = reference_run(fmnist_dir, tmp_path / "one_go", WORKER)
    fault = Fault("train", kill_loader_workers)
    with caplog.at_level(logging.ERROR, logger="ecl_lightning"):
        stop, metrics, ckpt, last = stop_then_resume(monkeypatch, fmnist_dir, tmp_path, fault, WORKER, same_dir=True)
    assert isinstance(stop, RuntimeError) and "DataLoader worker" in str(stop)
    assert "Failed (RuntimeError) while training, in epoch 1" in caplog.text and f"ckpt_path={last}" in caplog.text
    assert_same_run(metrics, ckpt, reference)
