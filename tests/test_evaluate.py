"""The evaluation entry point on a checkpoint written by a training run."""

from __future__ import annotations

import json
import os
import signal

import pytest

from ecl_lightning.checkpoint import CheckpointError
from ecl_lightning.config import ConfigError
from ecl_lightning.evaluate import evaluate
from ecl_lightning.module import ECLModule
from helpers import compose_cfg, tiny_overrides


def eval_cfg(tmp_path, ckpt, *overrides):
    return compose_cfg(
        [f"ckpt_path={ckpt}", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", *overrides],
        tmp_path,
        config_name="eval",
    )


def test_evaluate_reproduces_the_training_metrics(trained_run, tmp_path):
    run_dir, best, train_metrics = trained_run
    metrics = evaluate(eval_cfg(tmp_path, best))
    test_keys = {k for k in train_metrics if k.startswith("test/")}
    assert test_keys == set(metrics)
    for key in test_keys:
        assert metrics[key] == pytest.approx(train_metrics[key], abs=1e-6), key
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(metrics)
    assert "heads: label" in (tmp_path / "config.yaml").read_text()


def test_aggregation_choices(trained_run, tmp_path):
    _, best, _ = trained_run
    label = evaluate(eval_cfg(tmp_path / "a", best))
    expert2 = evaluate(eval_cfg(tmp_path / "b", best, "heads=expert2"))
    both = evaluate(eval_cfg(tmp_path / "c", best, "heads=label+dist"))
    assert expert2["test/acc"] == pytest.approx(label["test/expert2/acc"])  # the "ensemble" is expert 2 alone
    assert both["test/count"] == label["test/count"]
    with pytest.raises(ConfigError, match="expert7"):
        evaluate(eval_cfg(tmp_path / "d", best, "heads=expert7"))


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.ckpt"):
        evaluate(eval_cfg(tmp_path, tmp_path / "nope.ckpt"))


def test_sigterm_while_evaluating_exits_nonzero_without_metrics(trained_run, fmnist_dir, tmp_path, monkeypatch):
    _, best, _ = trained_run
    step = ECLModule.test_step

    def terminated(self, batch, batch_idx):
        if batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler notes it; the loop stops after this batch
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ECLModule, "test_step", terminated)
    # The training run's data with a small eval batch: the loop checks for SIGTERM after every batch but the last.
    data = [o for o in tiny_overrides("fmnist_lt", {"fmnist": fmnist_dir}) if o.startswith("data.")]
    overrides = [f"ckpt_path={best}", "data=fmnist_lt", *data, "data.eval_batch_size=4", "trainer.limit_test_batches=3"]
    cfg = compose_cfg(overrides, tmp_path, config_name="eval")
    with pytest.raises(SystemExit) as stop:
        evaluate(cfg)
    assert stop.value.code == 143
    assert not (tmp_path / "metrics.json").exists()
