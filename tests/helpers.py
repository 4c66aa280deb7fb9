"""Helpers shared by the test modules: compose a config as the CLI does, shrink it to the tiny generated data, run the
CLI in a subprocess, and compare a resumed run with an uninterrupted one. Fixtures live in conftest.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn


def tiny_overrides(experiment: str, data_dirs: dict[str, Path]) -> list[str]:
    """Shrink an experiment to the tiny generated datasets: small n_max, batch 8, no workers."""
    common = [
        "data.batch_size=8",
        "data.eval_batch_size=32",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "model.loss.queue_size=32",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.enable_progress_bar=false",
    ]
    if experiment == "fmnist_lt":
        return common + [
            f"data.data_dir={data_dirs['fmnist']}",
            "data.n_max=40",
            "data.imbalance_factor=10",
            "data.val_per_class=5",
        ]
    return common + [f"data.data_dir={data_dirs[experiment]}", "data.n_max=20", "data.imbalance_factor=10"]


def compose_cfg(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose like `python -m ecl_lightning` does, with the run directory set to `output_dir`."""
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as in a real run: the task function does not see the hydra node
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
    return cfg


def resume_overrides(fmnist_dir: Path, max_epochs: int) -> list[str]:
    # The lr steps down at the epoch boundary (scheduler state), the loss ramps span both epochs (global step),
    # and the last weights are tested (no best-by-val pick that could hide a difference in epoch 2).
    return tiny_overrides("fmnist_lt", {"fmnist": fmnist_dir}) + [
        f"trainer.max_epochs={max_epochs}",
        "trainer.deterministic=true",
        "model.schedule.name=multistep",
        "model.schedule.warmup_epochs=0",
        "model.schedule.milestones=[1]",
        "model.loss.ramp_epochs=2",
        "callbacks.model_checkpoint.monitor=null",
    ]


def last_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def assert_same_run(metrics: dict, ckpt: dict, reference: tuple[dict, dict]) -> None:
    ref_metrics, ref_ckpt = reference
    test_keys = {k for k in ref_metrics if k.startswith("test/")}
    assert test_keys and test_keys == {k for k in metrics if k.startswith("test/")}
    assert {k: metrics[k] for k in test_keys} == pytest.approx({k: ref_metrics[k] for k in test_keys}, abs=1e-6)
    assert (ckpt["epoch"], ckpt["global_step"]) == (ref_ckpt["epoch"], ref_ckpt["global_step"])
    state, ref_state = ckpt["state_dict"], ref_ckpt["state_dict"]
    assert state.keys() == ref_state.keys()
    for key in ("queue.keys", "queue.labels", "queue.ptr"):
        if key in ref_state:  # methods without the contrastive branch have no queue
            assert torch.equal(state[key], ref_state[key]), key
    different = [k for k in ref_state if not torch.equal(state[k], ref_state[k])]
    assert not different, different[:5]
    momentum = [s["momentum_buffer"] for s in ckpt["optimizer_states"][0]["state"].values()]
    ref_momentum = [s["momentum_buffer"] for s in ref_ckpt["optimizer_states"][0]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, ref_momentum, strict=True))
    assert ckpt["lr_schedulers"] == ref_ckpt["lr_schedulers"]


TINY = [
    "debug=fdr",
    "data.n_max=40",
    "data.imbalance_factor=10",
    "data.val_per_class=5",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "model.loss.queue_size=32",
    "trainer.enable_progress_bar=false",
]


# The same for the CIFAR-LT recipes (no val split, so no data.val_per_class).
CIFAR_TINY = [o for o in TINY if not o.startswith(("data.n_max", "data.val_per_class"))] + ["data.n_max=20"]


def run_cli(args: list[str], cwd: Path, env: dict | None = None, python: str = sys.executable):
    return subprocess.run(
        [python, "-m", "ecl_lightning", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def image_folder_overrides(root: Path) -> list[str]:
    """A tiny data=image_folder run on a generated folder: 16 px, batch 4, no workers, CPU."""
    return [
        "experiment=image_folder",
        f"data.data_dir={root}",
        "data.image_size=16",
        "data.val_per_class=2",
        "data.batch_size=4",
        "data.eval_batch_size=8",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "model.loss.queue_size=16",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.enable_progress_bar=false",
    ]


BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str):
    """Import bench/<name>.py as a module (the scripts import bench/_common.py, as when run from bench/)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(text: str) -> dict[str, list[str]]:
    """The rows of a printed Markdown table, by their first cell (header row dropped)."""
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


# ---- statistics of augmentation pipelines (tests/data/test_gpu_aug.py, test_kornia_equivalence.py) ------------------
Z = 4.0  # standard errors allowed between two sample means


def assert_close_means(a: torch.Tensor, b: torch.Tensor, allowance: float | torch.Tensor = 0.0, paired=False) -> None:
    """Means over dim 0 agree within Z standard errors (+ a known bias allowance), element-wise over the rest."""
    a, b = a.double(), b.double()
    if paired:
        d = a - b
        diff, se = d.mean(0), d.std(0) / len(d) ** 0.5
    else:
        diff, se = a.mean(0) - b.mean(0), (a.var(0) / len(a) + b.var(0) / len(b)) ** 0.5
    bound = Z * se + allowance
    assert (diff.abs() <= bound).all(), f"mean difference {diff.tolist()} beyond {bound.tolist()}"


def sample_images(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    """The generated test images (datagen): uint8 (n, 1, 28, 28) grey or (n, 3, 32, 32) colour."""
    import numpy as np

    from datagen import colour_images, grey_images

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    if kind == "fmnist":
        return torch.from_numpy(grey_images(labels, rng))[:, None]
    return torch.from_numpy(colour_images(labels, rng).reshape(n, 3, 32, 32))


def index_grid(n: int, size: int) -> torch.Tensor:
    """n images of 2 channels holding each pixel's row and column index: bilinear resampling keeps them linear, so
    the min and max of an output give the box it was sampled from (`crop_boxes`)."""
    rows, cols = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    return torch.stack((rows, cols)).expand(n, 2, size, size)


def crop_boxes(out: torch.Tensor) -> torch.Tensor:
    """(top, left, area fraction, log aspect ratio) of each crop of an `index_grid` image."""
    lo, hi = out.amin((2, 3)), out.amax((2, 3))
    (top, left), (h, w) = lo.unbind(1), (hi - lo + 1).unbind(1)
    return torch.stack((top, left, h * w / (out.shape[-1] * out.shape[-2]), torch.log(w / h)), 1)


def model_cfg(name: str, *overrides: str, experiment: str = "cifar100_lt") -> dict:
    """The composed `model` group of `model=name` under an experiment, as ECLModule's keyword arguments."""
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"model={name}", *overrides])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_"), model.pop("_convert_")
    return model


class FixedLogits(nn.Module):
    """Stands in for the network: returns the given label (and distillation) logits [K, B, C], so the loss sees
    known values."""

    def __init__(self, logits: torch.Tensor, dist_logits: torch.Tensor | None = None):
        super().__init__()
        self.logits, self.dist_logits = logits, dist_logits

    def forward(self, x):
        feats = torch.zeros(self.logits.shape[0], x.shape[0], 4)
        return {"feats": feats, "logits": self.logits, "dist_logits": self.dist_logits}
