"""The command line as users run it: `python -m ecl_lightning`, multirun, and a non-editable install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import CIFAR_TINY, TINY, run_cli

REPO = Path(__file__).resolve().parents[1]


# One intra-op thread, as the in-process tests use (conftest.one_torch_thread): on the shared 2-core machine a
# subprocess with 2 threads is several times slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def test_single_run_from_another_directory(fmnist_dir, tmp_path):
    result = run_cli([*TINY, f"data.data_dir={fmnist_dir}", "run_id=fixed"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "logs" / "debug" / "runs" / "fmnist_lt-ecl" / "fixed"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1
    assert (run_dir / "config.yaml").is_file() and (run_dir / "debug.log").is_file()
    output = result.stdout + result.stderr
    table = [line for line in output.splitlines() if "ensemble" in line and "%" not in line]  # the table's row
    assert "acc %" in output and table, output[-2000:]  # the results table is printed at the end
    assert f"{100 * metrics['test/acc']:.2f}" in table[-1]


def test_multirun_sweeps_a_loss_option(fmnist_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["-m", "model.loss.reweight=ratio,none", *TINY, f"data.data_dir={fmnist_dir}", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job, rule in ((0, "ratio"), (1, "none")):
        assert (sweep / str(job) / "metrics.json").is_file()
        assert f"reweight: {rule}" in (sweep / str(job) / "config.yaml").read_text()
    report = subprocess.run(
        [sys.executable, "-m", "ecl_lightning.report", str(sweep)], capture_output=True, text=True, timeout=60
    )
    assert report.returncode == 0, report.stderr
    assert "| model.loss.reweight=ratio | 1 |" in report.stdout and "| model.loss.reweight=none | 1 |" in report.stdout


def test_multirun_with_in_process_ddp_is_refused(fmnist_dir, tmp_path):
    result = run_cli(
        ["-m", "seed=0,1", *TINY, f"data.data_dir={fmnist_dir}", "trainer.strategy=ddp", "trainer.devices=2"],
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "re-runs the sweep" in result.stderr and "ddp_spawn" in result.stderr


def test_non_editable_install_runs_from_anywhere(fmnist_dir, tmp_path):
    """A wheel (not the source tree) carries the configs: build it, install it alone, run it elsewhere."""
    source = tmp_path / "source"  # a copy, so the build writes nothing into the checkout (build/, *.egg-info)
    for part in ("src", "conf", "pyproject.toml", "README.md"):
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy2
        copy(
            REPO / part,
            source / part,
            **({"ignore": shutil.ignore_patterns("*.egg-info", "__pycache__")} if (REPO / part).is_dir() else {}),
        )
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("ecl_lightning-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ecl_lightning/conf/train.yaml" in names and "ecl_lightning/conf/experiment/cifar100_lt.yaml" in names

    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:  # a wheel is a zip: unpacking it is installing it
        zf.extractall(site)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {"PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import ecl_lightning; print(ecl_lightning.__file__)"],
        cwd=workdir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    result = run_cli([*TINY, f"data.data_dir={fmnist_dir}", "run_id=w"], cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "logs" / "debug" / "runs" / "fmnist_lt-ecl" / "w" / "metrics.json").is_file()


@pytest.mark.parametrize("bad, message", [("model=nonexistent", "model"), ("experiment=imagenet_xx", "experiment")])
def test_unknown_config_choice_fails_fast(bad, message, tmp_path):
    result = run_cli([bad, "--cfg", "job"], cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr


def test_single_run_without_its_optimized_metric_exits_0(fmnist_dir, tmp_path):
    # No sweeper reads the value: the run exits 0 and says that nothing is returned (it used to exit 1 after testing).
    result = run_cli([*TINY, f"data.data_dir={fmnist_dir}", "optimized_metric=val/acc_best"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "optimized_metric=val/acc_best is not among this run's metrics" in log and "no value is returned" in log


def test_cifar_lt_run_and_sweep_exit_0(cifar100_dir, tmp_path):
    # CIFAR-LT has no val split, the default optimized_metric is val/acc: every run exited 1 after writing
    # metrics.json, and a `-m seed=0,1` sweep ran both jobs and then exited 1.
    data = [*CIFAR_TINY, f"data.data_dir={cifar100_dir}", "experiment=cifar100_lt"]
    single = run_cli([*data, "run_id=one"], cwd=tmp_path, env=ONE_THREAD)
    assert single.returncode == 0, single.stderr[-3000:]
    assert (tmp_path / "logs" / "debug" / "runs" / "cifar100_lt-ecl" / "one" / "metrics.json").is_file()
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "seed=0,1", *data, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (sweep / "0" / "metrics.json").is_file() and (sweep / "1" / "metrics.json").is_file()
    assert (result.stdout + result.stderr).count("optimized_metric=val/acc is not among this run's metrics") == 2


@pytest.mark.slow  # ResNet-50 x 3, 8,142 classes: ~30 s here; test_cifar_lt_run_and_sweep_exit_0 takes the same path
def test_inat2018_run_exits_0(inat2018_tree, tmp_path):
    # iNat 2018 has no val split either (its val split is the test split).
    result = run_cli(
        ["experiment=inat2018", "debug=fdr", "trainer=cpu", f"data.split_dir={inat2018_tree / 'splits'}",
         f"data.image_root={inat2018_tree / 'images'}", "data.batch_size=2", "data.eval_batch_size=2",
         "data.num_workers=0", "data.persistent_workers=false", "data.pin_memory=false", "data.image_size=64",
         "data.resize_size=72", "model.loss.queue_size=8", "trainer.precision=32-true",
         "trainer.enable_progress_bar=false", "run_id=inat"],
        cwd=tmp_path,
        env=ONE_THREAD,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "logs" / "debug" / "runs" / "inat2018-ecl" / "inat" / "metrics.json").is_file()
