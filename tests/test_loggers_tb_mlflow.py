"""logger=tensorboard and logger=mlflow: what they write, read back with the libraries' own readers and compared with
the CSV log and metrics.json of the same run, across a resume in the same run directory (one TensorBoard folder, one
MLflow run); an evaluation's MLflow run; the install line without the extra."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml

from ecl_lightning.config import ConfigError
from ecl_lightning.evaluate import evaluate
from ecl_lightning.loggers import MLFLOW_RUN_ID_FILE, MLFlowLogger, record_mlflow_run
from ecl_lightning.train import train
from helpers import compose_cfg, resume_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("tensorboard", reason='pip install "ecl_lightning[loggers]"')
pytest.importorskip("mlflow", reason='pip install "ecl_lightning[loggers]"')

LOGGERS = ["logger=[csv,tensorboard,mlflow]", "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def resumed_run(fmnist_dir, tmp_path_factory) -> Path:
    """One epoch, then `ckpt_path=last` to two epochs in the same run directory, with CSV, TensorBoard and MLflow."""
    import torch

    run_dir = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose_cfg(resume_overrides(fmnist_dir, 1) + LOGGERS, run_dir))
        first_config = yaml.safe_load((run_dir / "config.yaml").read_text())
        train(compose_cfg(resume_overrides(fmnist_dir, 2) + LOGGERS + ["ckpt_path=last"], run_dir))
    finally:
        torch.set_num_threads(threads)
    (run_dir / "first_config.json").write_text(json.dumps(first_config))
    return run_dir


def _csv_series(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric in the CSV log (appended to across the resume)."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(file) if row.get(key)]


def _assert_same_series(written: list[tuple[int, float]], expected: list[tuple[int, float]], key: str) -> None:
    assert [step for step, _ in written] == [step for step, _ in expected], key
    assert [value for _, value in written] == pytest.approx([value for _, value in expected], abs=1e-6), key


def _tensorboard(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events


def _mlflow(run_dir: Path, experiment_name: str = "train"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"file:{run_dir / 'logs' / 'mlruns'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == experiment_name]  # task_name
    return client, client.search_runs([experiment.experiment_id])


def _flat(tree: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):  # an empty mapping gives no param, as in Lightning's flattening
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:250]
    return out


def test_tensorboard_writes_every_scalar_into_one_folder(resumed_run):
    log_dir = resumed_run / "tensorboard"
    assert not [p for p in log_dir.iterdir() if p.is_dir()]  # no version_N folder, none added on resume
    # An event file per writer: each part's fit and its test (Lightning closes the writer after fit) = 4 here.
    assert len(list(log_dir.glob("events.out.tfevents.*"))) >= 2
    events = _tensorboard(resumed_run)
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_kd", "lr-SGD", "val/acc", "val/acc_few", "test/acc", "test/expert1/acc"} <= tags
    for key in ("train/loss", "train/loss_kd", "val/acc", "val/acc_few", "test/acc"):
        written = [(e.step, e.value) for e in events.Scalars(key)]
        _assert_same_series(written, _csv_series(resumed_run, key), key)  # both parts, the values CSV has
    val_steps = [e.step for e in events.Scalars("val/acc")]
    assert len(val_steps) == 2 and val_steps[0] < val_steps[1]  # epoch 1 from the first part, epoch 2 resumed
    train_steps = [e.step for e in events.Scalars("train/loss")]
    assert train_steps == sorted(set(train_steps)) and max(train_steps) > val_steps[0]  # the resume continues
    metrics = json.loads((resumed_run / "metrics.json").read_text())
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_mlflow_run_has_the_metrics_params_and_config(resumed_run):
    client, runs = _mlflow(resumed_run)
    (run,) = runs
    assert run.info.run_name == "fmnist_lt-ecl" and run.info.status == "FINISHED"
    metrics = json.loads((resumed_run / "metrics.json").read_text())
    test_keys = [k for k in metrics if k.startswith("test/")]
    assert test_keys and {k: run.data.metrics[k] for k in test_keys} == pytest.approx(
        {k: metrics[k] for k in test_keys}, abs=1e-6
    )
    for key in ("train/loss", "val/acc", "val/acc_few"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        _assert_same_series(history, _csv_series(resumed_run, key), key)

    # Params: the first part's config, named like overrides (MLflow keeps a param's first value) ...
    params = run.data.params
    first = _flat(json.loads((resumed_run / "first_config.json").read_text()))
    assert {k: params.get(k) for k in first} == first
    assert params["data.n_max"] == "40" and params["trainer.max_epochs"] == "1"
    # ... and the module's hparams under model. (what the config does not say: the data's class counts), no copies.
    assert params["model.num_classes"] == "10" and "model.class_counts" in params
    assert not [k for k in params if k.startswith(("loss.", "net.", "config"))]

    # The artifact is the resumed part's resolved config.
    config = yaml.safe_load((resumed_run / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 2
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(resumed_run / "download"))
    assert yaml.safe_load(Path(local).read_text()) == config


def test_resume_continues_the_same_mlflow_run(resumed_run):
    client, runs = _mlflow(resumed_run)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run_id = runs[0].info.run_id
    assert (resumed_run / MLFLOW_RUN_ID_FILE).read_text().strip() == run_id
    val = client.get_metric_history(run_id, "val/acc")
    assert len(val) == 2 and val[0].step < val[1].step  # one point from each part
    epoch_at = {m.step: m.value for m in client.get_metric_history(run_id, "epoch")}
    assert [epoch_at[m.step] for m in val] == [0.0, 1.0]  # the resumed part logged epoch 1, not a restarted 0
    assert len(client.get_metric_history(run_id, "test/acc")) == 2  # each part tested its weights


def test_evaluate_logs_an_mlflow_run_with_its_config(resumed_run, tmp_path):
    ckpt = resumed_run / "checkpoints" / "last.ckpt"
    tracking = f"logger.mlflow.tracking_uri=file:{tmp_path / 'logs' / 'mlruns'}"
    overrides = [f"ckpt_path={ckpt}", "trainer.enable_progress_bar=false", "logger=mlflow", tracking]
    metrics = evaluate(compose_cfg(overrides, tmp_path, config_name="eval"))
    client, (run,) = _mlflow(tmp_path, "eval")
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "download"))
    assert yaml.safe_load(Path(local).read_text())["ckpt_path"] == str(ckpt)


def test_a_recorded_run_missing_from_the_tracking_uri_is_a_config_error(tmp_path):
    (tmp_path / MLFLOW_RUN_ID_FILE).write_text("0" * 32 + "\n")
    logger = MLFlowLogger(tracking_uri=f"file:{tmp_path / 'mlruns'}", run_id="0" * 32)
    with pytest.raises(ConfigError, match=r"logger.mlflow.run_id=0+ \(recorded in .*\): not found .*delete"):
        record_mlflow_run([logger], tmp_path)


@pytest.mark.parametrize("logger, modules", [("mlflow", ["mlflow"]), ("tensorboard", ["tensorboard", "tensorboardX"])])
def test_a_missing_extra_names_the_install_line_before_anything_is_read(logger, modules, tmp_path, monkeypatch):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    overrides = [f"logger={logger}", f"data.data_dir={tmp_path / 'no-data'}"]  # a data error would come later
    with pytest.raises(ConfigError, match=rf'logger.{logger} .*not installed: pip install "ecl_lightning\[loggers\]"'):
        train(compose_cfg(overrides, tmp_path))
