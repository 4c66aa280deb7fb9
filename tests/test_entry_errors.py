"""Issue 25: predict, export, report and plots treat a user error as train and evaluate do (one line on stderr, exit
code 2, no traceback), read checkpoints with the same reader, and keep class names with spaces and accents intact
from the class folders through train, predict and export. Every test runs the command line in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datagen import write_image_folder
from helpers import image_folder_overrides
from test_errors import assert_one_message

NAMES = ["T shirt", "cat", "sac à dos", "Ölfass"]  # sorted, as the classes are: space, ASCII, accents


def run(module: str, args: list[str], cwd: Path, env: dict | None = None, python_args: tuple = ()):
    """`python -m ecl_lightning.<module> args` (module "" for training), one torch thread."""
    target = "ecl_lightning" + (f".{module}" if module else "")
    return subprocess.run(
        [sys.executable, *python_args, "-m", target, *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short training run from the command line on a grey 16 px folder whose class names have spaces and accents:
    (run directory, the image folder)."""
    root = write_image_folder(tmp_path_factory.mktemp("own") / "photos", [10, 8, 5, 4], names=NAMES)
    run_dir = tmp_path_factory.mktemp("run")
    overrides = image_folder_overrides(root) + [
        "data.channels=1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        f"hydra.run.dir={run_dir}",
    ]
    result = run("", overrides, cwd=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, root


def test_class_names_round_trip_through_train_predict_export(trained, tmp_path):
    run_dir, root = trained
    assert json.loads((run_dir / "data_subset.json").read_text(encoding="utf-8"))["class_names"] == NAMES
    (ckpt,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["class_names"] == NAMES

    # Predict a folder with unreadable files among good ones: each gets its reason, the run goes on (exit 0).
    inputs = tmp_path / "inputs"
    shutil.copytree(root / "sac à dos", inputs / "sac à dos")
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (inputs / "notes.txt").write_text("not an image")
    out = tmp_path / "predictions.csv"
    result = run("predict", [f"ckpt_path={run_dir}", f"input={inputs}", f"output={out}", "progress=false"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(out)
    assert len(rows) == len(list((root / "sac à dos").rglob("*.*"))) + 2
    bad = {Path(r["path"]).name: r for r in rows if r["error"]}
    assert set(bad) == {"broken.jpg", "notes.txt"} and not any(r["class"] for r in bad.values())
    assert "UnidentifiedImageError" in bad["broken.jpg"]["error"]
    good = [r for r in rows if not r["error"]]
    assert {r["class"] for r in good} <= set(NAMES) and all("sac à dos" in r["path"] for r in good)
    assert {r[f"top{k}_class"] for r in good for k in (1, 2, 3, 4)} == set(NAMES)  # every name, written as is

    # Export: the names in the file's metadata and beside it.
    from ecl_lightning.export import load_export

    model_file = tmp_path / "export" / "m.pt"
    result = run("export", [f"ckpt_path={ckpt}", f"output={model_file}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _, metadata = load_export(model_file)
    assert metadata["class_names"] == NAMES
    assert json.loads(Path(f"{model_file}.json").read_text(encoding="utf-8"))["class_names"] == NAMES


def test_predict_one_image_file(trained, tmp_path):
    run_dir, root = trained
    image = sorted((root / "Ölfass").glob("*.png"))[0]
    out = tmp_path / "one.csv"
    # Hydra's override grammar refuses non-ASCII letters unquoted: a path with them is given in quotes.
    result = run("predict", [f"ckpt_path={run_dir}", f"input='{image}'", f"output={out}", "progress=false"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = read_rows(out)
    assert row["path"] == str(image) and row["class"] in NAMES and not row["error"]


def bad_checkpoints(tmp_path: Path, ckpt: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a checkpoint path, how its one-line message starts)."""
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[:5000])
    plain = tmp_path / "plain.ckpt"  # another package's file: a dict of tensors, no state_dict
    torch.save({"weight": torch.zeros(2, 2)}, plain)
    foreign = tmp_path / "foreign.ckpt"  # another Lightning model: a state_dict without ECLModule's hyper-parameters
    torch.save({"state_dict": {"weight": torch.zeros(2)}, "hyper_parameters": {"lr": 0.1}}, foreign)
    return {
        "missing": (tmp_path / "nope.ckpt", f"ckpt_path={tmp_path / 'nope.ckpt'} does not exist"),
        "truncated": (cut, f"ckpt_path={cut} cannot be read"),
        "plain dict": (plain, f"ckpt_path={plain} is not a Lightning checkpoint (no state_dict)"),
        "foreign": (foreign, f"ckpt_path={foreign} has no ECLModule hyper-parameters"),
    }


@pytest.mark.parametrize("case", ["input missing", "empty folder", "output under a file", "output a folder"])
def test_predict_wrong_input_or_output_is_one_line(case, trained, tmp_path):
    run_dir, root = trained
    args = {"input": str(root), "output": str(tmp_path / "p.csv")}
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "a_file").write_text("x")
    start = {
        "input missing": ("input", str(tmp_path / "typo"), f"input={tmp_path / 'typo'}: no such file or folder"),
        "empty folder": ("input", str(tmp_path / "empty"), f"input={tmp_path / 'empty'} is an empty folder"),
        "output under a file": (
            "output",
            str(tmp_path / "a_file" / "p.csv"),
            f"output={tmp_path / 'a_file' / 'p.csv'} cannot be written: {tmp_path / 'a_file'} is not a directory",
        ),
        "output a folder": ("output", str(tmp_path), f"output={tmp_path} is a folder"),
    }
    key, value, message = start[case]
    args[key] = value
    result = run("predict", [f"ckpt_path={run_dir}", *(f"{k}={v}" for k, v in args.items())], tmp_path)
    assert_one_message(result, message)


@pytest.mark.parametrize("case", ["missing", "truncated", "plain dict", "foreign"])
def test_predict_bad_checkpoint_is_one_line(case, trained, tmp_path):
    run_dir, root = trained
    (ckpt,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    path, message = bad_checkpoints(tmp_path, ckpt)[case]
    result = run("predict", [f"ckpt_path={path}", f"input={root}", f"output={tmp_path / 'p.csv'}"], tmp_path)
    assert_one_message(result, message)
    assert not (tmp_path / "p.csv").exists()


def test_predict_traceback_with_hydra_full_error(tmp_path):
    result = run("predict", ["ckpt_path=x.ckpt", f"input={tmp_path / 'typo'}"], tmp_path, {"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr and "PathNotFoundError" in result.stderr


def test_export_without_onnx_is_one_line(trained, tmp_path):
    # An environment without the extra: a module named onnx (and onnxruntime) whose import fails, first on the path.
    shim = tmp_path / "shim"
    for name in ("onnx", "onnxruntime"):
        (shim / name).mkdir(parents=True)
        (shim / name / "__init__.py").write_text(f'raise ImportError("No module named {name!r} (test shim)")\n')
    run_dir, _ = trained
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))}
    result = run("export", [f"ckpt_path={run_dir}", "format=onnx", f"output={tmp_path / 'm'}"], tmp_path, env)
    line = assert_one_message(result, "format=onnx needs the onnx package")
    assert 'pip install "ecl_lightning[onnx]"' in line and not (tmp_path / "m.onnx").exists()


def test_export_bad_checkpoint_and_output_are_one_line(trained, tmp_path):
    run_dir, _ = trained
    (ckpt,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    cut, message = bad_checkpoints(tmp_path, ckpt)["truncated"]
    result = run("export", [f"ckpt_path={cut}", f"output={tmp_path / 'm.pt'}"], tmp_path)
    assert_one_message(result, message)
    (tmp_path / "a_file").write_text("x")
    result = run("export", [f"ckpt_path={ckpt}", f"output={tmp_path / 'a_file' / 'm'}"], tmp_path)
    assert_one_message(result, f"output={tmp_path / 'a_file' / 'm.pt'} cannot be written")


def test_report_and_plots_wrong_directory_is_one_line(tmp_path):
    assert_one_message(run("report", [str(tmp_path / "sweep")], tmp_path), f"no */metrics.json under {tmp_path}")
    result = run("plots", [str(tmp_path)], tmp_path)
    assert_one_message(result, f"{tmp_path / 'per_class.json'} does not exist: give the directory of a run")


def test_console_scripts_are_wrapped_entry_points(tmp_path):
    # Each console script of pyproject.toml runs one of the mains tested here (or in test_errors.py).
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    tested = {f"ecl_lightning.{m}:main" for m in ("__main__", "evaluate", "predict", "export", "report", "plots")}
    assert scripts and set(scripts.values()) <= tested


def test_the_image_folder_script_answers_help_without_importing_torch():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "fmnist_to_image_folder.py"
    code = (
        "import runpy, sys\n"
        "sys.argv = ['fmnist_to_image_folder.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--n-max" in proc.stdout and proc.stdout.strip().splitlines()[-1] == "False"
