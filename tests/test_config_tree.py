"""The config tree in lightning-hydra-template's shape: every option of every group composes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from helpers import compose_cfg, tiny_overrides

CONF = Path(__file__).parents[1] / "conf"
TEMPLATE_GROUPS = {"data", "model", "trainer", "logger", "callbacks", "experiment", "debug", "hparams_search",
                   "paths", "hydra", "extras", "local"}  # fmt: skip
OPTIONS = sorted(
    (str(path.parent.relative_to(CONF)), path.stem) for path in CONF.rglob("*.yaml") if path.parent != CONF
)


def test_the_template_groups_are_there():
    assert {d.name for d in CONF.iterdir() if d.is_dir()} >= TEMPLATE_GROUPS
    assert (CONF / "local" / "example.yaml").is_file()
    assert "/conf/local/default.yaml" in (CONF.parent / ".gitignore").read_text().splitlines()


def test_debug_profiler_profiles_a_short_epoch(fmnist_dir, tmp_path):
    from lightning.pytorch.profilers import SimpleProfiler

    from ecl_lightning.train import build

    cfg = compose_cfg(["debug=profiler", *tiny_overrides("fmnist_lt", {"fmnist": fmnist_dir})], tmp_path)
    _, _, trainer = build(cfg)
    assert isinstance(trainer.profiler, SimpleProfiler) and trainer.max_epochs == 1
    assert trainer.limit_train_batches == 20


@pytest.fixture(scope="module")
def hydra_initialised():
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        yield


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_composes(group, option, hydra_initialised):
    cfg = compose("train", overrides=[f"{group}={option}"], return_hydra_config=True)
    if group.startswith("hydra"):
        assert cfg.hydra.runtime.choices[group] == option
    else:
        assert cfg.model.net.num_experts >= 1 and cfg.data._target_.startswith("ecl_lightning.data.")


@pytest.mark.parametrize("debug", ["fdr", "limit", "overfit", "profiler"])
def test_a_debug_preset_keeps_the_trainer_s_devices(debug, hydra_initialised):
    """`trainer=ddp_cpu debug=limit` once composed devices: 1 (the preset won), silently running the DDP path a user
    asked for as one process; and `trainer=gpu debug=fdr` ran on the CPU."""
    ddp = compose("train", overrides=["trainer=ddp_cpu", f"debug={debug}"])
    assert (ddp.trainer.devices, ddp.trainer.strategy, ddp.trainer.accelerator) == (2, "ddp", "cpu")
    gpu = compose("train", overrides=["trainer=gpu", f"debug={debug}"])
    assert (gpu.trainer.accelerator, gpu.trainer.devices, gpu.trainer.precision) == ("gpu", 1, "bf16-mixed")
    assert ddp.data.num_workers == 0 and ddp.task_name == "debug"
