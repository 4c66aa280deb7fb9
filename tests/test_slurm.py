"""SLURM through Hydra's submitit launcher: the configs compose and size the job from the trainer; a mismatch between
the SLURM tasks and Lightning's devices is refused up front. Submitting a job is not tested (no cluster here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf, open_dict

from ecl_lightning.config import ConfigError
from ecl_lightning.launch import _check_slurm_sizes

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'ecl_lightning[slurm]'")


def compose_with_hydra(overrides: list[str]):
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_cfg_hydra_composes_the_plugin_launcher(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ecl_lightning", "hydra/launcher=submitit_slurm", "experiment=imagenet_lt", "--cfg",
         "hydra"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    launcher = OmegaConf.create(result.stdout).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.nodes == 1 and launcher.tasks_per_node == 1


def test_slurm_preset_sizes_the_job_from_the_trainer():
    cfg = compose_with_hydra(
        ["hydra/launcher=slurm", "experiment=imagenet_lt", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2",
         "hydra.launcher.partition=gpu"]
    )  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 8, 8)
    assert launcher.cpus_per_task == cfg.data.num_workers
    _check_slurm_sizes(cfg, launcher)  # consistent: no error


@pytest.mark.parametrize(
    ("devices", "num_nodes", "match"),
    [(-1, 1, "trainer.devices=-1"), (4, 1, "tasks_per_node=8"), (8, 1, "hydra.launcher.nodes=2")],
)
def test_slurm_size_mismatch_is_refused(devices, num_nodes, match):
    cfg = compose_with_hydra(["hydra/launcher=submitit_slurm", "trainer=ddp"])
    with open_dict(cfg):
        cfg.hydra.launcher.tasks_per_node, cfg.hydra.launcher.nodes = 8, 2
        cfg.trainer.devices, cfg.trainer.num_nodes = devices, num_nodes
    with pytest.raises(ConfigError, match=match):
        _check_slurm_sizes(cfg, cfg.hydra.launcher)
