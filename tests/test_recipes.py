"""The ImageNet-scale recipes (experiment=imagenet_lt | places_lt | inat2018): the published recipes' values, and one
fast_dev_run each on CPU with the recipe's real backbone and head at batch 2 on the generated split trees."""

from __future__ import annotations

import json
import logging

import pytest
from hydra import compose, initialize_config_module

from ecl_lightning.train import train
from helpers import compose_cfg

RECIPES = ["imagenet_lt", "places_lt", "inat2018"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def compose_recipe(experiment: str, overrides: tuple[str, ...] = ()):
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        return compose("train", overrides=[f"experiment={experiment}", *overrides])


def test_imagenet_lt_recipe():
    cfg = compose_recipe("imagenet_lt")
    net, loss, optim, sched = cfg.model.net, cfg.model.loss, cfg.model.optim, cfg.model.schedule
    assert cfg.data._target_.endswith("ImageNetLTDataModule") and cfg.data.batch_size == 256
    assert (net.backbone, net.num_experts, net.head, net.head_scale) == ("resnext50_32x4d", 3, "cosine", 16.0)
    assert cfg.trainer.max_epochs == 200 and cfg.trainer.precision == "bf16-mixed"
    assert optim.name == "sgd" and optim.nesterov and optim.momentum == 0.9
    assert (optim.lr, optim.base_batch_size, optim.weight_decay) == (0.2, 256, pytest.approx(2e-4))
    assert (sched.name, sched.warmup_epochs, sched.min_lr) == ("cosine", 5, pytest.approx(1e-4))
    assert (loss.queue_size, loss.moco_momentum, loss.hcm_k) == (16384, 0.999, 300)  # HCM_N of NCL's ImageNet-LT config


def test_inat2018_recipe():
    cfg = compose_recipe("inat2018")
    net, optim, sched = cfg.model.net, cfg.model.optim, cfg.model.schedule
    assert cfg.data._target_.endswith("INaturalist2018DataModule") and cfg.data.batch_size == 512
    assert (net.backbone, net.num_experts, net.head, net.head_scale) == ("resnet50", 3, "cosine", 32.0)
    assert cfg.trainer.max_epochs == 400 and sched.name == "cosine" and sched.warmup_epochs == 5
    assert (optim.lr, optim.base_batch_size, optim.weight_decay) == (0.2, 256, pytest.approx(2e-4))
    assert cfg.model.loss.queue_size % cfg.data.batch_size == 0


def test_places_lt_recipe():
    cfg = compose_recipe("places_lt")
    net, optim, sched = cfg.model.net, cfg.model.optim, cfg.model.schedule
    assert cfg.data._target_.endswith("PlacesLTDataModule") and cfg.data.batch_size == 256
    assert (net.backbone, net.num_experts, net.head) == ("resnet152", 3, "cosine")
    assert "pretrained_path" in net.backbone_kwargs and net.backbone_kwargs.pretrained_path is None
    assert cfg.trainer.max_epochs == 30 and optim.lr == pytest.approx(0.02) and optim.nesterov
    assert (sched.name, sched.warmup_epochs, list(sched.milestones), sched.gamma) == ("multistep", 5, [10, 20], 0.1)


@pytest.mark.parametrize("experiment", RECIPES)
def test_recipe_trainer_is_overridable(experiment):
    cpu = compose_recipe(experiment, ("trainer=cpu",))
    assert cpu.trainer.accelerator == "cpu" and cpu.trainer.precision == "32-true"
    ddp = compose_recipe(experiment, ("trainer=ddp",))
    assert ddp.trainer.strategy == "ddp" and ddp.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("experiment", RECIPES)
def test_recipe_fast_dev_run_with_real_backbone(experiment, request, tmp_path, caplog):
    # The real backbone and head (1000 / 365 / 8142 classes) at batch 2. Images are 64 px, not 224: the trunks are
    # fully convolutional, and 224 px cost 18-33 s per recipe on the 2-core test machine (64 px: 6-12 s).
    tree = request.getfixturevalue(f"{experiment}_tree")
    overrides = [
        f"experiment={experiment}",
        "trainer=cpu",  # the recipes train on GPUs; the debug presets keep the trainer's accelerator
        "debug=fdr",
        f"data.split_dir={tree / 'splits'}",
        f"data.image_root={tree / 'images'}",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.pin_memory=false",
        "data.image_size=64",
        "data.resize_size=72",
        "model.loss.queue_size=8",
        "trainer.precision=32-true",
        "trainer.enable_progress_bar=false",
    ]
    cfg = compose_cfg(overrides, tmp_path)
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.fast_dev_run
    with caplog.at_level(logging.INFO, logger="ecl_lightning"):
        metrics = train(cfg)
    assert metrics["test/count"] == 2 and 0.0 <= metrics["test/acc"] <= 1.0
    subset = json.loads((tmp_path / "data_subset.json").read_text())
    assert subset["dataset"] == experiment and subset["num_classes"] == cfg.data.num_classes
    # The lr follows the global batch: base lr x 2 / 256, and the log says so.
    expected_lr = cfg.model.optim.lr * 2 / 256
    assert "global batch 2 " in caplog.text and f"lr {expected_lr:.6g} " in caplog.text
    # The size report: parameters and per-image cost, measured on the run's input size.
    assert "Model: " in caplog.text and "Forward per 3x64x64 image" in caplog.text
