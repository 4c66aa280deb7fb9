"""The optuna search config (optional extra): a 2-trial search on tiny data runs, samples inside the declared space,
and writes Hydra's optimization_results.yaml with the best trial."""

from __future__ import annotations

import pytest
import yaml

from helpers import CIFAR_TINY, TINY, run_cli

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'ecl_lightning[optuna]'")

SPACE = {
    "model.loss.kd_weight": (0.1, 2.0),
    "model.loss.feat_weight": (0.0, 2.0),
    "model.loss.con_weight": (0.0, 1.0),
}


def test_optuna_search_over_loss_weights(fmnist_dir, tmp_path):
    sweep = tmp_path / "search"
    tiny = [o for o in TINY if not o.startswith("debug=")]
    result = run_cli(
        ["hparams_search=optuna_loss_weights", "hydra.sweeper.n_trials=2", "optimized_metric=val/acc", "debug=limit",
         "trainer.max_epochs=1", *tiny, f"data.data_dir={fmnist_dir}", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert 0.0 <= best["best_value"] <= 1.0
    params = best["best_params"]
    assert set(params) == {*SPACE, "model.loss.kd_temperature"}
    for key, (low, high) in SPACE.items():
        assert low <= params[key] <= high, key
    assert params["model.loss.kd_temperature"] in (1.0, 2.0, 4.0)
    # The best trial is one of the two run directories, with its sampled values in the saved config.
    trials = [yaml.safe_load((sweep / str(j) / "config.yaml").read_text())["model"]["loss"] for j in (0, 1)]
    assert any(t["kd_weight"] == pytest.approx(params["model.loss.kd_weight"]) for t in trials)


def test_search_on_data_without_a_val_split_is_refused_before_training(cifar10_dir, tmp_path):
    # The search maximises val/acc_best; CIFAR-LT has no val split. Refused before the first trial trains.
    sweep = tmp_path / "search"
    result = run_cli(
        ["hparams_search=optuna_loss_weights", "hydra.sweeper.n_trials=2", "experiment=cifar10_lt", *CIFAR_TINY,
         f"data.data_dir={cifar10_dir}", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "optimized_metric=val/acc_best: this run will not have it (CIFARLTDataModule has no validation split)" in (
        result.stderr
    )
    assert "sweeper OptunaSweeper needs it" in result.stderr
    assert not list(sweep.glob("*/checkpoints")) and not list(sweep.glob("*/metrics.json"))
