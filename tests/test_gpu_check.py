"""bench/gpu_check.py in its --cpu dry mode: the same code paths as on the GPU, so the script cannot rot."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_check(out: Path, experiments: str) -> tuple[subprocess.CompletedProcess, dict]:
    cmd = [sys.executable, str(SCRIPT), str(out), "--cpu", "--experiments", experiments]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    return result, json.loads((out / "gpu_check.json").read_text())


def numbers(tree) -> list[float]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in numbers(v)]
    return [float(tree)] if isinstance(tree, int | float) and not isinstance(tree, bool) else []


def test_cpu_dry_mode_writes_ok_sections(tmp_path):
    result, report = run_check(tmp_path, "cifar10_lt")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert set(report["sections"]) == {"fdr", "precision", "decode", "augment", "timing"}
    assert all(s["status"] == "ok" for s in report["sections"].values())
    assert report["sections"]["fdr"]["results"]["cifar10_lt"]["rc"] == 0
    timing = report["sections"]["timing"]["results"]
    assert {"eager", "fused", "channels_last", "ncl_shape"} <= set(timing)
    assert "fused_compile" in timing["skipped"]  # the reason is recorded
    assert timing["eager"]["img_per_s"] > 0 and timing["ncl_shape"]["ratio_vs_eager"] > 0
    assert all(math.isfinite(x) for x in numbers(timing))
    precision = report["sections"]["precision"]["results"]
    assert 0 <= precision["grad_rel_diff"] < 0.5 and math.isfinite(precision["loss_rel_diff"])
    assert report["sections"]["decode"]["results"]["max_abs_pixel_diff"] <= 255
    augment = report["sections"]["augment"]["results"]
    assert set(augment) >= {"cifar_view1", "cifar_view2", "fmnist_view1", "fmnist_view2"}
    assert 0 <= augment["max_z"] <= 5 and len(augment["cifar_view1"]["gpu_mean"]) == 3
    md = (tmp_path / "gpu_check.md").read_text()
    assert "## fdr: ok" in md and "## timing: ok" in md


@pytest.mark.slow
def test_cpu_dry_mode_all_experiments(tmp_path):
    result, report = run_check(tmp_path, "cifar10_lt,cifar100_lt,imagenet_lt,places_lt,inat2018,image_folder")
    assert result.returncode == 0, json.dumps(report["sections"]["fdr"], default=str)[-3000:]
    assert all(r["rc"] == 0 and r["metrics_json"] for r in report["sections"]["fdr"]["results"].values())
