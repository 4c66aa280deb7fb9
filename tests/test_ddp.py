"""Exact distributed evaluation: the unpadded sampler, the evaluated-sample check, and 1 vs 2 gloo processes."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from datagen import write_idx_dataset
from ecl_lightning.config import ConfigError
from ecl_lightning.data import FashionMNISTLTDataModule, ImageNetLTDataModule
from ecl_lightning.data.datamodules.loaders import UnpaddedDistributedSampler
from ecl_lightning.evaluate import evaluate
from ecl_lightning.train import build, train
from helpers import compose_cfg, tiny_overrides

N_TEST, N_VAL = 101, 50  # an odd test set: 2 processes evaluate 51 and 50 images
# Eval batch 10: 6 test batches on rank 0, 5 on rank 1 (uneven batch counts must not hang); 11 on one process.
TINY = [o for o in tiny_overrides("fmnist_lt", {"fmnist": Path()}) if not o.startswith(("data.eval", "data.data_dir"))]
TINY += ["data.eval_batch_size=10"]


@pytest.fixture(scope="module")
def odd_fmnist_dir(tmp_path_factory) -> Path:
    """Fashion-MNIST IDX files with 101 test images (one class has 11): no world size > 1 divides it."""
    return write_idx_dataset(tmp_path_factory.mktemp("fmnist_odd"), 50, [10] * 9 + [11])


@pytest.mark.parametrize("n, world_size", [(1, 1), (5, 2), (101, 2), (7, 3), (8, 4), (10, 3), (0, 2)])
def test_unpadded_sampler_reads_every_index_once(n, world_size):
    samplers = [UnpaddedDistributedSampler(range(n), world_size, rank) for rank in range(world_size)]
    shares = [list(s) for s in samplers]
    assert sorted(i for share in shares for i in share) == list(range(n))  # each index once, none added
    assert [len(s) for s in samplers] == [len(share) for share in shares]
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert all(share == sorted(share) for share in shares)  # no shuffling
    # What it replaces: torch's sampler pads to a multiple of the world size, repeating samples.
    padded = sum(len(DistributedSampler(range(n), world_size, rank, shuffle=False)) for rank in range(world_size))
    assert padded == math.ceil(n / world_size) * world_size


def test_unpadded_sampler_refuses_a_process_without_samples():
    with pytest.raises(ValueError, match="2 sample.* cannot be shared by 3 processes"):
        UnpaddedDistributedSampler(range(2), 3, 2)


def _shares(loaders: list[DataLoader]) -> list[list[int]]:
    return [list(loader.sampler) for loader in loaders]


def test_fmnist_eval_loaders_split_the_data_across_processes(odd_fmnist_dir):
    dm = FashionMNISTLTDataModule(str(odd_fmnist_dir), batch_size=8, eval_batch_size=10, num_workers=0, n_max=40,
                                  imbalance_factor=10, val_per_class=5)  # fmt: skip
    assert isinstance(dm.test_dataloader().sampler, SequentialSampler)  # no trainer / one process: unchanged
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0)
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)
    for split, size in (("test", N_TEST), ("val", N_VAL)):
        loaders = []
        for rank in range(2):
            dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
            loaders.append(getattr(dm, f"{split}_dataloader")())
        assert all(isinstance(loader.sampler, UnpaddedDistributedSampler) for loader in loaders)
        assert sorted(sum(_shares(loaders), [])) == list(range(size)), split
    assert [len(loader) for loader in loaders] == [3, 3]  # val: 25 images each in batches of 10
    # Training keeps its shuffled loader; Lightning puts its own (padded, shuffling) DistributedSampler in.
    assert isinstance(dm.train_dataloader().sampler, RandomSampler)


def test_split_file_eval_loaders_split_the_data_across_processes(imagenet_lt_tree):
    dm = ImageNetLTDataModule(str(imagenet_lt_tree / "splits"), str(imagenet_lt_tree / "images"), num_classes=5,
                              batch_size=4, eval_batch_size=4, num_workers=0)  # fmt: skip
    dm.setup()
    loaders = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loaders.append(dm.test_dataloader())
    assert sorted(sum(_shares(loaders), [])) == list(range(len(dm.test_set))) and len(dm.test_set) == 15


def test_a_sample_counted_twice_stops_the_test(odd_fmnist_dir, tmp_path, monkeypatch):
    """What a padded sampler does (here on one process: sample 0 twice) is an error naming both numbers."""
    original = FashionMNISTLTDataModule.test_dataloader

    def padded(self):
        loader = original(self)
        indices = [0, *range(len(loader.dataset))]
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=indices)

    monkeypatch.setattr(FashionMNISTLTDataModule, "test_dataloader", padded)
    cfg = compose_cfg(["train=false", "trainer=cpu", f"data.data_dir={odd_fmnist_dir}", *TINY], tmp_path)
    with pytest.raises(RuntimeError, match=f"test: {N_TEST + 1} samples .* 1 process.* holds {N_TEST}"):
        train(cfg)
    # A limited test evaluates fewer samples on purpose: no error.
    cfg = compose_cfg(["train=false", "trainer=cpu", "trainer.limit_test_batches=2", f"data.data_dir={odd_fmnist_dir}",
                       *TINY], tmp_path / "limited")  # fmt: skip
    assert train(cfg)["test/num_samples"] == 20


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ecl_lightning", *args],
        cwd=cwd,
        env={**os.environ, "ECL_ROOT": str(cwd)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "model", ["ecl", "ecl_ncl", "ncl", "balanced_softmax", "ce", "sade", "balpoe", "ride", "ecl_sade"]
)
def test_two_process_fit_tests_like_one_process(model, odd_fmnist_dir, tmp_path):
    """Fit each method on 2 gloo processes (uneven eval batches), then test its best checkpoint on 1 process: the test
    metrics agree and both count each of the 101 test images once (and the 2-process validation each of the 50).
    Every method: Lightning's `ddp` stops at step 2 on a parameter without gradient (a head no loss uses)."""
    args = ["trainer=ddp_cpu", "trainer.max_epochs=1", "run_id=ddp", f"model={model}"]
    args += [f"data.data_dir={odd_fmnist_dir}", *TINY]
    args = [a for a in args if not a.startswith("trainer.devices=")]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = {p.parent for p in tmp_path.glob("logs/train/runs/*/ddp/metrics.json")}
    two = json.loads((run_dir / "metrics.json").read_text())
    assert two["test/num_samples"] == N_TEST
    assert two.get("test/expert3/count", N_TEST) == N_TEST
    assert all(math.isfinite(v) for v in two.values())
    with open(run_dir / "csv" / "metrics.csv") as f:
        val_counts = {float(row["val/num_samples"]) for row in csv.DictReader(f) if row.get("val/num_samples")}
    assert val_counts == {N_VAL}

    (ckpt,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    one = evaluate(
        compose_cfg(
            [f"ckpt_path={ckpt}", "trainer=cpu", "trainer.enable_progress_bar=false"],
            tmp_path / "one",
            config_name="eval",
        )  # fmt: skip
    )
    assert set(one) == {k for k in two if k.startswith("test/")}
    assert one["test/num_samples"] == N_TEST
    for key, value in one.items():
        assert value == pytest.approx(two[key], rel=1e-6, abs=1e-6), key
    per_class_two = json.loads((run_dir / "per_class.json").read_text())
    per_class_one = json.loads((tmp_path / "one" / "per_class.json").read_text())
    assert per_class_one["ensemble"] == pytest.approx(per_class_two["ensemble"], abs=1e-6)


def test_sync_batchnorm_on_cpu_is_refused_before_training(odd_fmnist_dir, tmp_path):
    """torch's SyncBatchNorm is GPU-only; DDP would fail inside fit, after the processes were launched."""
    overrides = ["trainer=ddp_cpu", "trainer.sync_batchnorm=true", f"data.data_dir={odd_fmnist_dir}", *TINY]
    cfg = compose_cfg([o for o in overrides if not o.startswith("trainer.devices=")], tmp_path)
    with pytest.raises(ConfigError, match=r"trainer\.sync_batchnorm=true .* on CPU"):
        build(cfg)


def test_two_process_fit_with_uneven_validation_batches(imagenet_lt_tree, tmp_path):
    """Validation inside a 2-process fit, where DDP wraps the model: 15 val images in batches of 7 are 2 batches on
    rank 0 and 1 on rank 1; nothing may wait for the missing batch. Split-file data: the Fashion-MNIST val split is
    balanced over 10 classes, so always even."""
    tree = imagenet_lt_tree
    args = [f"data.split_dir={tree / 'splits'}", f"data.image_root={tree / 'images'}", "data.num_classes=5"]
    args += ["data=imagenet_lt", "data.image_size=32", "data.resize_size=36", "data.batch_size=4"]
    args += ["data.eval_batch_size=7", "data.num_workers=0", "data.persistent_workers=false"]
    args += ["model.net.backbone=resnet32", "model.loss.queue_size=16", "trainer=ddp_cpu", "trainer.max_epochs=1"]
    args += ["trainer.enable_progress_bar=false", "run_id=ddp"]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = {p.parent for p in tmp_path.glob("logs/train/runs/*/ddp/metrics.json")}
    assert json.loads((run_dir / "metrics.json").read_text())["test/num_samples"] == 15
    with open(run_dir / "csv" / "metrics.csv") as f:
        val_counts = [float(row["val/num_samples"]) for row in csv.DictReader(f) if row.get("val/num_samples")]
    assert val_counts == [15]
