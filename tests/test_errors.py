"""Issue 11, errors that must name the problem: each wrong input gives one line naming the key or file and what to
do, before training (before any data is read, where the config alone is wrong)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from ecl_lightning.checkpoint import CheckpointError
from ecl_lightning.config import ConfigError
from ecl_lightning.data import DatasetFormatError
from ecl_lightning.evaluate import evaluate
from ecl_lightning.outputs import save_resolved_config
from ecl_lightning.train import build
from helpers import compose_cfg, run_cli, tiny_overrides


def build_error(overrides: list[str], tmp_path, data_dirs: dict | None = None) -> str:
    """The ConfigError message of build(); the data dir does not exist, so it must come before any data is read."""
    data = tiny_overrides("fmnist_lt", data_dirs or {"fmnist": tmp_path / "no-data"})
    cfg = compose_cfg(["debug=fdr", *data, *overrides], tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        build(cfg)
    message = str(err.value)
    assert "\n" not in message, message
    return message


# 7, 8: a wrong type or range is named at start-up, for every group.
@pytest.mark.parametrize(
    "override, message",
    [
        ("model.loss.kd_weight=abc", "model.loss.kd_weight='abc' must be a number"),
        ("model.loss.reweight_gamma=abc", "model.loss.reweight_gamma='abc' must be a number"),
        ("model.loss.queue_size=1.5", "model.loss.queue_size=1.5 must be an integer"),
        ("model.loss.hcm=yes", "model.loss.hcm='yes' must be true or false"),
        ("model.net.proj_hidden=wide", "model.net.proj_hidden='wide' must be an integer or null"),
        ("model.schedule.milestones=5", "model.schedule.milestones=5 must be a list"),
        ("model.net.backbone=resnet18", "model.net.backbone='resnet18' is not one of ["),
        ("+model.net.backbone_kwargs.depth=3", "unknown key model.net.backbone_kwargs.depth for resnet_small"),
        ("model.channels_last=2", "model.channels_last=2 must be true or false"),
        ("data.batch_size=0", "data.batch_size=0 must be >= 1"),
        ("data.eval_batch_size=-4", "data.eval_batch_size=-4 must be >= 1"),
        ("data.num_workers=-1", "data.num_workers=-1 must be >= 0"),
        ("data.imbalance_factor=0.5", "data.imbalance_factor=0.5 must be >= 1"),
        ("data.batch_size=eight", "data.batch_size='eight' must be an integer"),
        ("data.data_dir=7", "data.data_dir=7 must be a string"),
        ("+data.batchsize=8", "unknown key data.batchsize"),
        ("seed=abc", "seed='abc' must be an integer or null"),
        ("test=maybe", "test='maybe' must be true or false"),
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc' must be an integer or null"),
        ("trainer.devices=0", "trainer.devices=0 must be >= 1, -1 (all devices) or auto"),
        ("trainer.num_nodes=0", "trainer.num_nodes=0 must be >= 1"),
        ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 must be a fraction in [0, 1]"),
    ],
)
def test_wrong_type_or_range_is_named_before_data(override, message, tmp_path):
    assert message in build_error([override], tmp_path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data=imagenet_lt", "data.decode=turbo"], "data.decode must be one of ('pil', 'bytes')"),
        (["data=places_lt", "data.split_format=csv"], "data.split_format must be one of"),
        (["data=image_folder", "data.preset=huge"], "data.preset must be one of"),
        (["data=cifar10_lt", "data.num_classes=7"], "data.num_classes must be 10 or 100 for CIFAR"),
    ],
)
def test_a_datamodule_value_is_a_config_error_before_data(overrides, message, tmp_path):
    # A ConfigError is a user error: one line and exit code 2 from the CLI (a plain ValueError gave a traceback).
    missing = tmp_path / "no-data"
    paths = [f"data.split_dir={missing}"] if overrides[0] in ("data=imagenet_lt", "data=places_lt") else []
    cfg = compose_cfg(["debug=fdr", *overrides, *paths, f"paths.data_dir={missing}"], tmp_path / "run")
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(cfg)


def test_batch_larger_than_the_train_set_is_named_before_training(fmnist_dir, tmp_path):
    message = build_error(["data.batch_size=1000"], tmp_path, data_dirs={"fmnist": fmnist_dir})
    assert message.startswith("data.batch_size=1000 is larger than the long-tailed train set (")


# 12: one expert leaves the distillation weights unused.
def test_one_expert_with_distillation_weights_is_refused(tmp_path):
    message = build_error(["model.net.num_experts=1"], tmp_path)
    assert "model.loss.kd_weight=0.6" in message and "model.loss.feat_weight=1.0" in message
    assert "model.loss.kd_weight=0 model.loss.feat_weight=0" in message
    message = build_error(["model.net.num_experts=1", "model.loss.kd_weight=0"], tmp_path)
    assert message.startswith("model.net.num_experts=1: model.loss.feat_weight=1.0 would be unused")


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=ce"],
        ["model=balanced_softmax"],
        ["model.net.num_experts=1", "model.loss.kd_weight=0", "model.loss.feat_weight=0"],
    ],
)
def test_one_expert_without_distillation_builds(overrides, fmnist_dir, tmp_path):
    cfg = compose_cfg(["debug=fdr", *tiny_overrides("fmnist_lt", {"fmnist": fmnist_dir}), *overrides], tmp_path)
    _, model, _ = build(cfg)
    assert model.num_experts == 1


# 9, 10: checkpoints that cannot be read, or do not fit the data or the model, are named before testing or training.
def save_checkpoint(model, path):
    """What Lightning writes, minus the loop state: enough for evaluate and for the resume checks."""
    import lightning

    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__,
            "epoch": 0,
            "global_step": 0,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def ncl_fmnist_ckpt(fmnist_dir, tmp_path_factory):
    """An NCL checkpoint on Fashion-MNIST (1 channel, 10 classes), with its run's config.yaml beside checkpoints/."""
    run = tmp_path_factory.mktemp("ncl_run")
    cfg = compose_cfg(["debug=fdr", "model=ncl", *tiny_overrides("fmnist_lt", {"fmnist": fmnist_dir})], run)
    _, model, _ = build(cfg)
    save_resolved_config(cfg, run)
    (run / "checkpoints").mkdir()
    return save_checkpoint(model, run / "checkpoints" / "epoch_000.ckpt")


def eval_error(tmp_path, ckpt, *overrides) -> str:
    cfg = compose_cfg([f"ckpt_path={ckpt}", "trainer.enable_progress_bar=false", *overrides], tmp_path, "eval")
    with pytest.raises(CheckpointError) as err:
        evaluate(cfg)
    message = str(err.value)
    assert "\n" not in message and not (tmp_path / "metrics.json").exists()
    return message


def test_truncated_checkpoint_is_named(ncl_fmnist_ckpt, tmp_path):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ncl_fmnist_ckpt.read_bytes()[:5000])
    message = eval_error(tmp_path / "eval", cut)
    assert message.startswith(f"ckpt_path={cut} cannot be read") and "truncated or corrupt" in message
    # Resuming from it: named before any data is read (the data dir does not exist).
    message = build_error([f"ckpt_path={cut}"], tmp_path)
    assert message.startswith(f"ckpt_path={cut} ") and "truncated" in message


def test_checkpoint_of_other_channels_is_named(ncl_fmnist_ckpt, cifar10_dir, tmp_path):
    message = eval_error(tmp_path, ncl_fmnist_ckpt, "data=cifar10_lt", f"data.data_dir={cifar10_dir}")
    assert message.startswith(f"checkpoint {ncl_fmnist_ckpt} was trained on 1-channel images with 10 classes")
    assert "data=cifar10_lt gives 3-channel images with 10 classes" in message


def test_checkpoint_evaluates_on_its_own_data(ncl_fmnist_ckpt, tmp_path):
    cfg = compose_cfg([f"ckpt_path={ncl_fmnist_ckpt}", "trainer.limit_test_batches=1"], tmp_path, "eval")
    assert 0 <= evaluate(cfg)["test/acc"] <= 1


def test_resume_with_another_model_config_is_named(ncl_fmnist_ckpt, fmnist_dir, tmp_path):
    message = build_error([f"ckpt_path={ncl_fmnist_ckpt}", "model=ecl"], tmp_path, data_dirs={"fmnist": fmnist_dir})
    assert message.startswith(f"ckpt_path={ncl_fmnist_ckpt} does not fit this model (")
    assert "model.loss.dist_head: checkpoint False, this run True" in message
    assert "Resume with the model config the checkpoint was trained with" in message


# 11, 14: from the command line, a user-facing error is its message (one line on stderr), exit code 2, no traceback.
def assert_one_message(result, start: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert line.startswith(f"Error: {start}"), line
    return line


def test_cli_config_error_is_one_line(tmp_path):
    result = run_cli(["debug=fdr", "model.loss.kd_weight=abc", f"data.data_dir={tmp_path}"], cwd=tmp_path)
    assert_one_message(result, "model.loss.kd_weight='abc' must be a number")
    (log_file,) = (tmp_path / "logs" / "debug" / "runs").glob("*/*/debug.log")  # the run's log keeps it too
    assert "[ERROR] - model.loss.kd_weight='abc' must be a number" in log_file.read_text()
    result = run_cli(["-m", "debug=fdr", "seed=0,1", "data.batch_size=0", f"data.data_dir={tmp_path}"], cwd=tmp_path)
    assert_one_message(result, "job 0 (debug=fdr seed=0 data.batch_size=0 ")  # a sweep names the job


def test_cli_evaluate_truncated_checkpoint_is_one_line(ncl_fmnist_ckpt, tmp_path):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ncl_fmnist_ckpt.read_bytes()[:5000])
    result = subprocess.run(
        [sys.executable, "-m", "ecl_lightning.evaluate", f"ckpt_path={cut}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_message(result, f"ckpt_path={cut} cannot be read")


def test_cli_unwritable_run_directory_is_named(tmp_path):
    run_dir = tmp_path / "logs" / "debug" / "runs" / "fmnist_lt-ecl" / "fixed"
    (run_dir / "debug.log").mkdir(parents=True)  # a log file Hydra cannot open (a read-only dir does not stop root)
    result = run_cli(["debug=fdr", "run_id=fixed"], cwd=tmp_path)
    line = assert_one_message(result, f"the run directory {run_dir} (hydra.run.dir) cannot be written")
    assert "is a directory" in line and "paths.log_dir=" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_cli_read_only_run_directory_is_named(tmp_path):
    run_dir = tmp_path / "logs" / "debug" / "runs" / "fmnist_lt-ecl" / "fixed"
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o555)
    try:
        result = run_cli(["debug=fdr", "run_id=fixed"], cwd=tmp_path)
    finally:
        run_dir.chmod(0o755)
    assert "Permission denied" in assert_one_message(result, f"the run directory {run_dir} (hydra.run.dir)")


def test_read_only_directory_is_found_before_logging(tmp_path, monkeypatch):
    import tempfile

    from ecl_lightning.cli import unwritable

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)  # what a read-only directory or file system does
    assert unwritable(tmp_path / "new" / "run") == f"cannot write in {tmp_path} (Permission denied)"


# 13: a corrupt or cut-short JPEG stops the run before training (it stopped it inside epoch 0), by default.
def test_corrupt_jpeg_is_named_before_training(tmp_path):
    from datagen import SPLIT_TREE_TRAIN, write_split_tree

    tree = write_split_tree(tmp_path / "tree", "imagenet_lt", 5, SPLIT_TREE_TRAIN, 3)
    train_split = tree / "splits" / "ImageNet_LT_train.txt"
    rel = train_split.read_text().split()[0]
    (tree / "images" / rel).write_bytes((tree / "images" / rel).read_bytes()[:300])
    data = [f"data.split_dir={tree / 'splits'}", f"data.image_root={tree / 'images'}", "data.num_classes=5"]
    cfg = compose_cfg(["data=imagenet_lt", "debug=fdr", "data.num_workers=0", *data], tmp_path / "run")
    assert cfg.data.verify_images is False and cfg.data.check_headers is True
    with pytest.raises(DatasetFormatError) as err:
        build(cfg)
    assert f"{train_split}:1: not a readable image {rel}: " in str(err.value)
