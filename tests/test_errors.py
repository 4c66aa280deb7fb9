"""Issue 11, errors that must name the problem: each wrong input gives one line naming the key or file and what to
do, before training (before any data is read, where the config alone is wrong)."""

from __future__ import annotations

import pytest

from ecl_lightning.config import ConfigError
from ecl_lightning.train import build
from test_train import compose_cfg, tiny_overrides


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
        ("model.channels_last=2", "model.channels_last=2 must be true or false"),
        ("data.batch_size=0", "data.batch_size=0 must be >= 1"),
        ("data.eval_batch_size=-4", "data.eval_batch_size=-4 must be >= 1"),
        ("data.num_workers=-1", "data.num_workers=-1 must be >= 0"),
        ("data.imbalance_factor=0.5", "data.imbalance_factor=0.5 must be >= 1"),
        ("data.batch_size=eight", "data.batch_size='eight' must be an integer"),
        ("data.data_dir=7", "data.data_dir=7 must be a string"),
        ("+data.batchsize=8", "unknown key data.batchsize"),
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc' must be an integer or null"),
        ("trainer.devices=0", "trainer.devices=0 must be >= 1, -1 (all devices) or auto"),
        ("trainer.num_nodes=0", "trainer.num_nodes=0 must be >= 1"),
        ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 must be a fraction in [0, 1]"),
    ],
)
def test_wrong_type_or_range_is_named_before_data(override, message, tmp_path):
    assert message in build_error([override], tmp_path)


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
