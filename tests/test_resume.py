"""Exact resume: 1 epoch + resume to 2 gives the same weights, queues, optimiser state and test numbers as 2 epochs
in one go, from an explicit checkpoint path and from `ckpt_path=last` in a stable `run_id` run directory; a run stopped
by SIGTERM exits non-zero, names its last checkpoint, and resumes from it to the same result."""

from __future__ import annotations

import csv
import logging
import os
import signal
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf, open_dict

import ecl_lightning.train as train_module
from ecl_lightning.config import ConfigError
from ecl_lightning.module import ECLModule
from ecl_lightning.train import train
from helpers import assert_same_run, compose_cfg, last_state, resume_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def step_counter(monkeypatch) -> list[int]:
    """Counts ECLModule training steps: a resumed run trains only the epochs left."""
    calls = []
    step = ECLModule.training_step

    def counted(self, batch, batch_idx):
        calls.append(batch_idx)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ECLModule, "training_step", counted)
    return calls


@pytest.fixture(scope="module")
def one_go(fmnist_dir, tmp_path_factory) -> tuple[dict, dict]:
    """Two epochs in one run: (metrics, last.ckpt)."""
    run_dir = tmp_path_factory.mktemp("one_go")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = train(compose_cfg(resume_overrides(fmnist_dir, 2), run_dir))
    finally:
        torch.set_num_threads(threads)
    return metrics, last_state(run_dir)


def test_resume_from_a_checkpoint_path_equals_one_go(one_go, fmnist_dir, tmp_path, step_counter):
    first, second = tmp_path / "first", tmp_path / "second"
    train(compose_cfg(resume_overrides(fmnist_dir, 1), first))
    steps_per_epoch = last_state(first)["global_step"]
    assert last_state(first)["epoch"] == 0 and len(step_counter) == steps_per_epoch > 0
    ckpt_path = first / "checkpoints" / "last.ckpt"
    metrics = train(compose_cfg(resume_overrides(fmnist_dir, 2) + [f"ckpt_path={ckpt_path}"], second))
    assert len(step_counter) == 2 * steps_per_epoch  # the second run trained epoch 2 only
    assert_same_run(metrics, last_state(second), one_go)


@pytest.mark.parametrize(
    "model, extra",
    [
        ("sade", []),
        ("balpoe", []),  # mixup: the resumed epoch must draw the same lambdas and permutations
        ("ride", ["model.loss.drw_epoch=1"]),  # the deferred re-weighting switches on in the resumed epoch
        ("ecl_sade", []),
    ],
)
def test_skill_diverse_methods_resume_exactly(model, extra, fmnist_dir, tmp_path):
    def overrides(epochs: int) -> list[str]:
        return [*resume_overrides(fmnist_dir, epochs), f"model={model}", *extra]

    reference = train(compose_cfg(overrides(2), tmp_path / "one_go")), last_state(tmp_path / "one_go")
    train(compose_cfg(overrides(1), tmp_path / "first"))
    ckpt_path = tmp_path / "first" / "checkpoints" / "last.ckpt"
    metrics = train(compose_cfg([*overrides(2), f"ckpt_path={ckpt_path}"], tmp_path / "second"))
    assert_same_run(metrics, last_state(tmp_path / "second"), reference)


def compose_run(overrides: list[str], root: Path):
    """Compose as `python -m ecl_lightning` does, with the run directory that Hydra would make under `root`."""
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={root}", *overrides], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        run_dir = Path(cfg.hydra.run.dir)
        del cfg["hydra"]
        cfg.paths.output_dir = str(run_dir)
    return cfg, run_dir


def test_stable_run_id_with_ckpt_path_last_resumes(one_go, fmnist_dir, tmp_path, step_counter):
    # As a resubmitted SLURM job does: the first start, then the same run id with ckpt_path=last, which finds
    # <run dir>/checkpoints/last.ckpt and continues from it. The run's CSV log keeps the first start's rows.
    cfg, run_dir = compose_run(resume_overrides(fmnist_dir, 1) + ["run_id=job42"], tmp_path)
    assert run_dir.name == "job42"
    train(cfg)
    steps_per_epoch = last_state(run_dir)["global_step"]
    assert last_state(run_dir)["epoch"] == 0 and len(step_counter) == steps_per_epoch > 0
    cfg, same_dir = compose_run(resume_overrides(fmnist_dir, 2) + ["run_id=job42", "ckpt_path=last"], tmp_path)
    assert same_dir == run_dir
    metrics = train(cfg)
    recorded = OmegaConf.load(run_dir / "config.yaml")
    assert recorded.ckpt_path == str(run_dir / "checkpoints" / "last.ckpt")  # config.yaml records the file resumed from
    assert len(step_counter) == 2 * steps_per_epoch  # resumed: a fresh start would have trained 2 epochs
    assert_same_run(metrics, last_state(run_dir), one_go)


def test_last_checkpoint_is_the_latest_epoch_when_the_best_is_earlier(fmnist_dir, tmp_path):
    # Lightning >= 2.6 writes last.ckpt only with a new top-k file, so last.ckpt held the best epoch and a resume from
    # `last` lost the epochs after it. A constant monitor (the val sample count) makes epoch 0 the only best one.
    overrides = [o for o in resume_overrides(fmnist_dir, 2) if not o.startswith("callbacks.model_checkpoint.monitor")]
    train(compose_cfg([*overrides, "callbacks.model_checkpoint.monitor=val/count", "test=false"], tmp_path))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch_*.ckpt")) == ["epoch_000.ckpt"]
    last, best = last_state(tmp_path), torch.load(tmp_path / "checkpoints" / "epoch_000.ckpt", weights_only=True)
    assert (last["epoch"], best["epoch"]) == (1, 0)
    assert last["global_step"] == 2 * best["global_step"] > 0


def test_resume_in_the_same_directory_appends_to_the_csv_log(fmnist_dir, tmp_path):
    # Lightning's CSVLogger deleted csv/metrics.csv when it found one: the validation rows of the epochs before the
    # stop were gone. Now the resumed run appends, and the log has one val/acc row per epoch of the whole run.
    train(compose_cfg(resume_overrides(fmnist_dir, 1), tmp_path))
    first = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    train(compose_cfg(resume_overrides(fmnist_dir, 2) + ["ckpt_path=last"], tmp_path))
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    val_epochs = [int(float(r["epoch"])) for r in rows if r.get("val/acc")]
    assert val_epochs == [0, 1]
    assert len(rows) > len(first) - 1  # the first start's rows (its file less the header) are all still there


def test_ckpt_path_last_without_a_checkpoint_is_an_error_naming_where_it_looked(fmnist_dir, tmp_path, step_counter):
    # It trained from scratch, with only Lightning's warning in the log.
    cfg, run_dir = compose_run(resume_overrides(fmnist_dir, 1) + ["ckpt_path=last", "run_id=no_such_run"], tmp_path)
    with pytest.raises(ConfigError) as err:
        train(cfg)
    message = str(err.value)
    assert f"ckpt_path=last: no checkpoint at {run_dir / 'checkpoints' / 'last.ckpt'}" in message
    assert "run_id=" in message and not step_counter and not (run_dir / "checkpoints").exists()


def test_truncated_checkpoint_is_refused_before_training(fmnist_dir, tmp_path, step_counter):
    # What a crash in the middle of a (non-atomic) write leaves: torch's zip reader failed once training had started.
    train(compose_cfg(resume_overrides(fmnist_dir, 1), tmp_path / "first"))
    whole = (tmp_path / "first" / "checkpoints" / "last.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole[: len(whole) // 2])
    del step_counter[:]
    with pytest.raises(ConfigError, match=r"is not a complete checkpoint \(truncated"):
        train(compose_cfg(resume_overrides(fmnist_dir, 2) + [f"ckpt_path={cut}"], tmp_path / "second"))
    assert not step_counter


class LogScore(Callback):
    """Logs val/score = 1 - epoch / 10 at each validation: the best epoch is epoch 0, whatever the weights do."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("val/score", 1.0 - trainer.current_epoch / 10)


def test_resume_into_a_new_directory_keeps_the_best_checkpoint(fmnist_dir, tmp_path, monkeypatch, caplog):
    # Lightning restores best_model_score only for the same dirpath: resumed into a new run directory, "best"
    # restarted, and the run reported and tested a later, worse epoch as its best.
    real = train_module.instantiate_callbacks
    monkeypatch.setattr(train_module, "instantiate_callbacks", lambda cfg: [*real(cfg), LogScore()])
    best = ["callbacks.model_checkpoint.monitor=val/score"]
    first, second = tmp_path / "first", tmp_path / "second"
    stopped = train(compose_cfg(resume_overrides(fmnist_dir, 1) + best, first))
    assert stopped["val/acc_best"] == pytest.approx(1.0)
    last = first / "checkpoints" / "last.ckpt"
    with caplog.at_level(logging.INFO, logger="ecl_lightning"):
        metrics = train(compose_cfg(resume_overrides(fmnist_dir, 2) + best + [f"ckpt_path={last}"], second))
    assert metrics["val/acc_best"] == pytest.approx(1.0)  # epoch 0's, not epoch 1's 0.9
    tested = second / "checkpoints" / "epoch_000.ckpt"  # copied into the new run directory; the old one is kept
    assert f"Testing the best val weights ({tested})" in caplog.text
    assert tested.read_bytes() == (first / "checkpoints" / "epoch_000.ckpt").read_bytes()
    assert sorted(p.name for p in (second / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    test_keys = [k for k in stopped if k.startswith("test/")]
    assert {k: metrics[k] for k in test_keys} == pytest.approx({k: stopped[k] for k in test_keys}, abs=1e-6)
    state = last_state(second)["callbacks"]
    (checkpoint_state,) = [v for k, v in state.items() if k.startswith("ModelCheckpoint")]
    assert checkpoint_state["best_model_path"] == str(tested) and float(checkpoint_state["best_model_score"]) == 1.0


def test_resume_continues_the_same_wandb_run(fmnist_dir, tmp_path, monkeypatch):
    # Each start made a new W&B run; a resumed run now reuses the id found in its run directory.
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb = ["logger=wandb", "callbacks.wandb_report.max_confusion_classes=0"]
    run_dir = tmp_path / "run"
    train(compose_cfg(resume_overrides(fmnist_dir, 1) + wandb, run_dir))
    train(compose_cfg(resume_overrides(fmnist_dir, 2) + wandb + ["ckpt_path=last"], run_dir))
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.rsplit("-", 1)[-1] for r in runs}) == 1, runs


class SigtermAtEpochStart(Callback):
    """Sends this process SIGTERM as `scancel` or a preemption would, when the given epoch starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_exits_nonzero_names_the_checkpoint_and_the_run_resumes(
    one_go, fmnist_dir, tmp_path, step_counter, monkeypatch, caplog
):
    # Lightning ends its loop on SIGTERM with SystemExit(0): a killed run looked finished to a shell or a sweep.
    real = train_module.instantiate_callbacks
    monkeypatch.setattr(train_module, "instantiate_callbacks", lambda cfg: [*real(cfg), SigtermAtEpochStart(1)])
    stopped = tmp_path / "stopped"
    with caplog.at_level(logging.ERROR, logger="ecl_lightning"), pytest.raises(SystemExit) as stop:
        train(compose_cfg(resume_overrides(fmnist_dir, 2), stopped))
    assert stop.value.code == train_module.SIGTERM_EXIT_CODE == 143
    last = stopped / "checkpoints" / "last.ckpt"
    assert f"resume with ckpt_path={last}" in caplog.text and "in epoch 1" in caplog.text
    assert not (stopped / "metrics.json").exists()  # not tested: no numbers that look like a finished run's
    steps_per_epoch = last_state(stopped)["global_step"]
    assert last_state(stopped)["epoch"] == 0 and len(step_counter) == steps_per_epoch + 1  # one step into epoch 1

    monkeypatch.setattr(train_module, "instantiate_callbacks", real)
    metrics = train(compose_cfg(resume_overrides(fmnist_dir, 2) + [f"ckpt_path={last}"], tmp_path / "resumed"))
    assert_same_run(metrics, last_state(tmp_path / "resumed"), one_go)
