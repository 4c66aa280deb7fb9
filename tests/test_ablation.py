"""Sweeps as configs: every variant changes what it says, the ablation sweeps exist and run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from helpers import TINY, run_cli

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPECTED = {
    "reweight_none": ("model.loss.reweight", "none"),
    "reweight_difference": ("model.loss.reweight", "difference"),
    "reweight_class_ema": ("model.loss.reweight", "class_ema"),
    "no_feat": ("model.loss.feat_weight", 0.0),
    "no_contrastive": ("model.loss.contrastive", "none"),
    "experts_2": ("model.net.num_experts", 2),
    "experts_4": ("model.net.num_experts", 4),
}


def compose_train(*overrides: str):
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("variant, change", sorted(EXPECTED.items()))
def test_variant_changes_one_thing(variant, change):
    base, cfg = compose_train(), compose_train(f"variant={variant}")
    key, value = change
    assert OmegaConf.select(cfg, key) == value and OmegaConf.select(base, key) != value
    assert base.model.loss.keys() == cfg.model.loss.keys()


def test_ablation_sweeps_name_existing_variants():
    cfg = compose_train("ablation=ecl_components")
    assert cfg.hydra.mode.name == "MULTIRUN"
    listed = cfg.hydra.sweeper.params.variant.split(",")
    not_components = {"vit_deit_lt"}  # a backbone recipe (timm ViT after DeiT-LT), not a component of ECL
    assert set(listed) == {p.stem for p in (CONF / "variant").glob("*.yaml")} - not_components
    assert cfg.hydra.sweeper.params.seed == "0,1,2"
    assert compose_train("ablation=methods").hydra.sweeper.params.model == "ecl,ecl_ncl,ncl,balanced_softmax,ce"


def test_ablation_runs_as_one_command_and_reports_by_variant(fmnist_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["ablation=ecl_components", 'hydra.sweeper.params.variant="full,no_feat"', "hydra.sweeper.params.seed=0",
         *TINY, f"data.data_dir={fmnist_dir}", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "ecl_lightning.report", str(sweep)], capture_output=True, text=True)
    assert "| variant=full | 1 |" in report.stdout and "| variant=no_feat | 1 |" in report.stdout
