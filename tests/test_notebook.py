"""notebooks/analysis.ipynb: stored without outputs, and it runs top to bottom on a tiny finished run."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ecl_lightning.train import train
from helpers import compose_cfg, tiny_overrides

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_on_a_tiny_run(fmnist_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    cfg = compose_cfg(["trainer.max_epochs=2"] + tiny_overrides("fmnist_lt", {"fmnist": fmnist_dir}), run_dir)
    train(cfg)
    monkeypatch.setenv("ECL_RUN_DIR", str(run_dir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", cwd=str(tmp_path)).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "all 3 experts agree on" in text and "of 100 test images" in text
    assert "train/kd_weight_mean" in text
