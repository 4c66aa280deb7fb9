"""The run plan (ecl_lightning.plan) on its own: its decisions and checks from a composed config and a description of
the data, without a Trainer, a DataModule or any data on disk."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from omegaconf import OmegaConf

from ecl_lightning.checkpoint import CheckpointError
from ecl_lightning.config import ConfigError
from ecl_lightning.heads import Heads
from ecl_lightning.plan import LAST_EPOCH_FILENAME, DataInfo, check_before_data, plan, plan_checkpoint, run_config
from helpers import compose_cfg, tiny_overrides


def data_info(has_val: bool = True, num_classes: int = 10, in_chans: int = 1) -> DataInfo:
    counts = tuple(max(1, 40 // (k + 1)) for k in range(num_classes))
    return DataInfo(
        "fmnist_lt", "ecl_lightning.data.FashionMNISTLTDataModule", num_classes, in_chans, 28, counts, has_val
    )


def config(tmp_path, *overrides: str):
    data = tiny_overrides("fmnist_lt", {"fmnist": tmp_path / "no-data"})  # never read: the plan needs no data
    return compose_cfg([*data, *overrides], tmp_path / "run")


def save_checkpoint(path, num_classes: int = 10, in_chans: int = 1):
    torch.save({"state_dict": {}, "hyper_parameters": {"num_classes": num_classes, "in_chans": in_chans}}, path)
    return path


def test_data_with_a_val_split_keeps_the_config(tmp_path):
    cfg = config(tmp_path, "callbacks=default")
    run = plan(cfg, data_info(has_val=True))
    assert dict(run.trainer_overrides) == {} and dict(run.callback_overrides) == {}
    assert run.dropped_callbacks == () and run.atomic_checkpoints
    assert run.ckpt_path is None and run.resume is None
    assert run.heads == Heads() and str(run.heads) == "label"
    assert run.model_kwargs == {
        "num_classes": 10,
        "in_chans": 1,
        "img_size": 28,
        "class_counts": list(data_info().class_counts),
    }


def test_data_without_a_val_split_turns_validation_and_the_monitor_off(tmp_path):
    cfg = config(tmp_path, "callbacks=default")
    run = plan(cfg, data_info(has_val=False))
    assert dict(run.trainer_overrides) == {"limit_val_batches": 0, "num_sanity_val_steps": 0}
    assert dict(run.callback_overrides["model_checkpoint"]) == {"monitor": None, "filename": LAST_EPOCH_FILENAME}
    assert any("has no validation split" in note for note in run.notes)
    # The plan changes nothing; run_config applies it to a copy.
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc" and cfg.trainer.get("limit_val_batches") != 0
    applied = run_config(cfg, run)
    assert applied.trainer.limit_val_batches == 0 and applied.trainer.num_sanity_val_steps == 0
    assert applied.callbacks.model_checkpoint.monitor is None
    assert applied.callbacks.model_checkpoint.filename == LAST_EPOCH_FILENAME
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"


def test_no_callbacks_and_no_val_split_only_turn_validation_off(tmp_path):
    run = plan(config(tmp_path, "callbacks=none"), data_info(has_val=False))
    assert set(run.trainer_overrides) == {"limit_val_batches", "num_sanity_val_steps"}
    assert dict(run.callback_overrides) == {}


def test_no_logger_drops_the_learning_rate_monitor(tmp_path):
    run = plan(config(tmp_path, "callbacks=default", "~logger"), data_info())
    assert run.dropped_callbacks == ("lr_monitor",)
    assert "lr_monitor" in run_config(config(tmp_path, "callbacks=default", "~logger"), run).callbacks  # recorded
    assert plan(config(tmp_path, "callbacks=default"), data_info()).dropped_callbacks == ()


def test_configured_plugins_replace_the_atomic_checkpoint_writer(tmp_path):
    assert not plan(config(tmp_path, "+trainer.plugins=[x]"), data_info()).atomic_checkpoints


def test_resume_path_resolution(tmp_path):
    ckpt = save_checkpoint(tmp_path / "some.ckpt")
    run = plan(config(tmp_path, f"ckpt_path={ckpt}"), data_info())
    assert run.ckpt_path == str(ckpt) and run.resume == ckpt
    # ckpt_path=last is <run dir>/checkpoints/last.ckpt of this run
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    last = save_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    run = plan(config(tmp_path, "ckpt_path=last"), data_info())
    assert run.ckpt_path == str(last) and run.resume == last
    assert run_config(config(tmp_path, "ckpt_path=last"), run).ckpt_path == str(last)
    # no fit, or a name Lightning resolves itself: nothing to check against the data
    assert plan(config(tmp_path, f"ckpt_path={ckpt}", "train=false"), data_info()).resume is None
    run = plan(config(tmp_path, "ckpt_path=hpc"), data_info())
    assert run.ckpt_path == "hpc" and run.resume is None


def test_missing_last_checkpoint_is_the_same_error_before_data(tmp_path):
    cfg = config(tmp_path, "ckpt_path=last")
    for stage in (lambda: check_before_data(cfg), lambda: plan(cfg, data_info())):
        with pytest.raises(ConfigError, match=re.escape("ckpt_path=last: no checkpoint at ")):
            stage()


def test_checkpoint_of_other_data_is_named(tmp_path):
    ckpt = save_checkpoint(tmp_path / "cifar.ckpt", num_classes=100, in_chans=3)
    cfg = config(tmp_path, f"ckpt_path={ckpt}")
    with pytest.raises(CheckpointError) as err:
        plan(cfg, data_info(), check_before_data(cfg))
    assert str(err.value).startswith(f"checkpoint {ckpt} was trained on 3-channel images with 100 classes; ")
    assert "data=fmnist_lt gives 1-channel images with 10 classes" in str(err.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.loss.kd_weight=abc", "model.loss.kd_weight='abc' must be a number"),
        ("trainer.devices=0", "trainer.devices=0 must be >= 1, -1 (all devices) or auto"),
        ("model.eval.heads=experts", "model.eval.heads='experts' is not one of label, label+dist, expert1, expert2"),
    ],
)
def test_a_bad_value_raises_todays_message(override, message, tmp_path):
    cfg = config(tmp_path, override)
    for stage in (lambda: check_before_data(cfg), lambda: plan(cfg, data_info())):
        with pytest.raises(ConfigError, match=re.escape(message)):
            stage()


def test_batch_larger_than_the_train_set(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("data.batch_size=1000 is larger than the long-tailed train set (")):
        plan(config(tmp_path, "data.batch_size=1000"), data_info())


def test_the_plan_is_frozen(tmp_path):
    run = plan(config(tmp_path, "callbacks=default"), data_info(has_val=False))
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.ckpt_path = "other.ckpt"
    with pytest.raises(TypeError):
        run.trainer_overrides["limit_val_batches"] = 1
    with pytest.raises(TypeError):
        run.callback_overrides["model_checkpoint"]["monitor"] = "val/acc"
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.data.has_val = True


def test_heads_parse_once_into_a_value():
    assert Heads.parse("label") == Heads() and Heads.parse("label+dist") == Heads(dist=True)
    assert Heads.parse("expert2") == Heads(expert=2) and str(Heads(expert=2)) == "expert2"
    for bad in ("expert0", "expert", "Label", "expert1+dist"):
        with pytest.raises(ConfigError, match=re.escape("is not one of label, label+dist, expert1")):
            Heads.parse(bad)


def test_callbacks_config_leaves_out_the_dropped_ones(tmp_path):
    from ecl_lightning.plan import callbacks_config

    cfg = config(tmp_path, "callbacks=default", "~logger")
    run = plan(cfg, data_info())
    kept = callbacks_config(run_config(cfg, run), run)
    assert "lr_monitor" not in kept and kept.model_checkpoint.dirpath == str(tmp_path / "run" / "checkpoints")


@pytest.mark.parametrize(
    "overrides, gpus, message",
    [
        (
            ["trainer.accelerator=gpu"],
            0,
            "trainer.accelerator=gpu with trainer.devices=1, but this machine has no CUDA GPU",
        ),
        (["trainer.accelerator=gpu", "trainer.devices=4"], 2, "trainer.devices=4, but this machine has 2 CUDA GPU(s)"),
        (["trainer.accelerator=cuda", "trainer.devices=[0,1]"], 1, "has 1 CUDA GPU(s)"),
    ],
)
def test_a_gpu_trainer_without_the_gpus_is_one_line_before_data(tmp_path, monkeypatch, overrides, gpus, message):
    # Lightning's own refusal is a traceback from Trainer(), after the data is set up.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    cfg = config(tmp_path, *overrides)  # after tiny_overrides' trainer.accelerator=cpu
    for stage in (lambda: check_before_data(cfg), lambda: plan(cfg, data_info())):
        with pytest.raises(ConfigError, match=re.escape(message)):
            stage()


def test_a_gpu_trainer_with_enough_gpus_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = config(tmp_path, "trainer.accelerator=gpu", "trainer.devices=2")
    assert plan(cfg, data_info()).data == data_info()


def test_checkpoint_plan_of_a_run_directory(tmp_path):
    # evaluate, predict and export: a run directory resolves to its best checkpoint, read once; the data config of
    # the run is used when none is given; a bad heads value is named before any file is read.
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    best = save_checkpoint(run_dir / "checkpoints" / "epoch_007.ckpt", num_classes=7)
    OmegaConf.save({"data": {"_target_": "ecl_lightning.data.FashionMNISTLTDataModule", "data_dir": "x"}},
                   run_dir / "config.yaml")  # fmt: skip
    run = plan_checkpoint(OmegaConf.create({"ckpt_path": str(run_dir), "heads": "expert2", "data": None}))
    assert run.ckpt_path == best and run.hparams["num_classes"] == 7
    assert run.data.data_dir == "x" and run.data_name == "FashionMNISTLTDataModule"
    assert run.heads == Heads.parse("expert2") and run.eval_config["heads"] == "expert2"
    with pytest.raises(ConfigError, match=re.escape("heads='expert0' is not one of label")):
        plan_checkpoint(OmegaConf.create({"ckpt_path": str(tmp_path / "nope"), "heads": "expert0"}))
    with pytest.raises(CheckpointError, match="does not exist: give a .ckpt file or the directory of a run"):
        plan_checkpoint(OmegaConf.create({"ckpt_path": str(tmp_path / "nope"), "heads": "label"}))
