"""Using a trained model: `predict` on a folder (with an unreadable file), a glob and one file; `export` to
TorchScript and ONNX, reloaded and compared with the checkpoint."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch

from datagen import write_image_folder
from ecl_lightning.data import eval_transform, load_image
from ecl_lightning.export import export, load_export
from ecl_lightning.inference import NormalisedModel, load_for_inference
from ecl_lightning.module import ECLModule
from ecl_lightning.plan import resolve_checkpoint
from ecl_lightning.predict import predict
from ecl_lightning.train import train
from helpers import compose_cfg, image_folder_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAMES = ["cat", "dog", "fox", "owl"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short epoch on a 4-class folder (grey, 16 px): the run directory and its folder of images."""
    root = write_image_folder(tmp_path_factory.mktemp("own") / "photos", [10, 8, 5, 4])
    run = tmp_path_factory.mktemp("run")
    overrides = image_folder_overrides(root) + [
        "data.channels=1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
    ]
    train(compose_cfg(overrides, run))
    return run, root


def run_cfg(config_name, tmp_path, *overrides):
    return compose_cfg(list(overrides), tmp_path, config_name=config_name)


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_checkpoint_holds_the_class_names(trained):
    run, _ = trained
    ckpt = resolve_checkpoint(run)  # a run directory: its best-by-val checkpoint
    assert ckpt.name.startswith("epoch_")
    assert ECLModule.load_from_checkpoint(ckpt, map_location="cpu").hparams.class_names == NAMES


def test_predict_a_folder_with_an_unreadable_file(trained, tmp_path):
    run, root = trained
    inputs = tmp_path / "inputs"
    shutil.copytree(root / "dog", inputs / "dogs")  # nested folders, png / jpg / bmp, grey and RGB
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    out = tmp_path / "out" / "predictions.csv"
    summary = predict(
        run_cfg(
            "predict",
            tmp_path,
            f"ckpt_path={run}",
            f"input={inputs}",
            f"output={out}",
            "batch_size=3",
            "progress=false",
        )
    )
    rows = read_rows(out)
    assert summary["images"] == len(rows) == 9 and summary["unreadable"] == 1 and summary["images_per_s"] > 0
    (broken,) = [r for r in rows if r["error"]]
    assert broken["path"].endswith("broken.jpg") and "UnidentifiedImageError" in broken["error"] and not broken["class"]
    good = [r for r in rows if not r["error"]]
    assert {"top4_class", "expert3"} <= set(good[0]) and "top5_class" not in good[0]  # top-5 of 4 classes: 4
    assert all(r["class"] in NAMES for r in good)
    for r in good:
        assert r["class"] == r["top1_class"] and float(r["prob"]) >= float(r["top2_prob"])
        assert {r["expert1"], r["expert2"], r["expert3"]} <= set(NAMES)

    # The same numbers as the checkpoint on the eval transform of its training data.
    loaded = load_for_inference(run_cfg("predict", tmp_path / "c", f"ckpt_path={run}", "input=x"))
    transform = eval_transform(loaded.spec)
    for r in good[:3]:
        x = transform(load_image(r["path"], channels=1))[None]
        with torch.no_grad():
            probs = loaded.model.predict_logits(x)[0].softmax(-1)[0]
        assert NAMES[int(probs.argmax())] == r["class"] and float(probs.max()) == pytest.approx(
            float(r["prob"]), abs=1e-4
        )


def test_predict_a_glob_and_one_file(trained, tmp_path):
    run, root = trained
    out = tmp_path / "p.csv"
    predict(
        run_cfg("predict", tmp_path, f"ckpt_path={run}", f"input={root}/cat/*.png", f"output={out}", "progress=false")
    )
    assert len(read_rows(out)) == len(list((root / "cat").glob("*.png")))
    one = sorted((root / "fox").glob("*.jpg"))[0]
    predict(
        run_cfg("predict", tmp_path, f"ckpt_path={run}", f"input={one}", f"output={out}", "top_k=2", "heads=expert2")
    )
    (row,) = read_rows(out)
    assert row["path"] == str(one) and "top3_class" not in row


@pytest.mark.parametrize("fmt, heads", [("torchscript", "label"), ("torchscript", "expert2"), ("onnx", "label")])
def test_export_round_trip(fmt, heads, trained, tmp_path):
    if fmt == "onnx":
        import onnxruntime  # noqa: F401  (in the dev extras: this test runs in make test, never skipped)
    run, _ = trained
    path = export(
        run_cfg("export", tmp_path, f"ckpt_path={run}", f"format={fmt}", f"heads={heads}", f"output={tmp_path}/m")
    )
    model, metadata = load_export(path)
    assert metadata["class_names"] == NAMES and metadata["heads"] == heads
    assert metadata["input"]["shape"] == ["batch", 1, 16, 16] and len(metadata["input"]["mean"]) == 1
    assert (
        path == tmp_path / ("m.pt" if fmt == "torchscript" else "m.onnx")
        and path.with_name(path.name + ".json").is_file()
    )
    # The checkpoint's outputs on a batch (another batch size than the one traced), through ECLModule itself.
    module = ECLModule.load_from_checkpoint(resolve_checkpoint(run), map_location="cpu", eval={"heads": heads}).eval()
    mean, std = (torch.tensor(metadata["input"][k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    images = torch.rand(5, 1, 16, 16)
    with torch.no_grad():
        expected = module.predict_logits((images - mean) / std)[0]
        assert torch.allclose(model(images), expected, atol=1e-5)
        assert torch.allclose(
            NormalisedModel(
                module, load_for_inference(run_cfg("export", tmp_path / "c", f"ckpt_path={run}", f"heads={heads}")).spec
            )(images),
            expected,
            atol=1e-6,
        )


def test_a_checkpoint_without_class_names_predicts_class_ids(trained, tmp_path):
    run, root = trained
    ckpt = torch.load(resolve_checkpoint(run), map_location="cpu", weights_only=True)
    del ckpt["hyper_parameters"]["class_names"]  # as written before class names were stored
    (tmp_path / "checkpoints").mkdir()
    old = tmp_path / "checkpoints" / "old.ckpt"
    torch.save(ckpt, old)
    shutil.copy(run / "config.yaml", tmp_path / "config.yaml")
    out = tmp_path / "p.csv"
    predict(
        run_cfg("predict", tmp_path / "r", f"ckpt_path={old}", f"input={root}/owl", f"output={out}", "progress=false")
    )
    assert {r["class"] for r in read_rows(out)} <= {"0", "1", "2", "3"}


def test_the_readme_onnx_snippet_runs_with_onnxruntime_alone(trained, tmp_path):
    """The README's onnxruntime example, as printed there, on an exported model: it names the right classes and
    never imports torch."""
    import ast
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    after = readme.split("The ONNX file runs with onnxruntime alone", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    run, _ = trained
    path = export(run_cfg("export", tmp_path, f"ckpt_path={run}", "format=onnx", f"output={tmp_path}/my_model"))
    code = snippet + "import sys\nassert 'torch' not in sys.modules, 'the snippet imported torch'\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=path.parent, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = ast.literal_eval(proc.stdout.strip().splitlines()[-1])  # the list of two class names
    assert len(printed) == 2 and set(printed) <= set(NAMES)
