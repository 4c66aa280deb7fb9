"""Options renamed so that one name means one thing: an old name in a config or an override is told its new name;
a checkpoint written before the rename still loads, with its value under the new name."""

from __future__ import annotations

import re

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from ecl_lightning.config import ConfigError, LossConfig, from_dict
from ecl_lightning.evaluate import evaluate
from ecl_lightning.inference import load_module
from ecl_lightning.module import ECLModule
from helpers import compose_cfg

COUNTS = [40, 26, 17, 11, 7, 5, 3, 2, 2, 1]


def model_kwargs(*overrides: str) -> dict:
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=["model.loss.queue_size=32", *overrides])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_"), model.pop("_convert_")
    return model


def test_the_old_ramp_key_names_its_new_name():
    with pytest.raises(ConfigError, match=re.escape("model.loss.warmup_epochs is now model.loss.ramp_epochs")):
        from_dict(LossConfig, {"warmup_epochs": 2.0}, "model.loss")
    assert from_dict(LossConfig, {"ramp_epochs": 2.0}, "model.loss").ramp_epochs == 2.0


def test_a_checkpoint_saved_with_the_old_ramp_key_loads(tmp_path):
    kwargs = model_kwargs("model.loss.ramp_epochs=3")
    module = ECLModule(num_classes=10, class_counts=COUNTS, in_chans=1, **kwargs)
    hparams = dict(module.hparams)
    loss = dict(hparams["loss"])
    loss["warmup_epochs"] = loss.pop("ramp_epochs")  # as a checkpoint written before the rename
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": {**hparams, "loss": loss}}
    loaded = load_module(checkpoint)
    assert loaded.loss_cfg.ramp_epochs == 3
    saved, loaded_weights = module.state_dict(), loaded.state_dict()
    assert saved.keys() == loaded_weights.keys() and all(torch.equal(saved[k], loaded_weights[k]) for k in saved)
    path = tmp_path / "old.ckpt"
    torch.save({**checkpoint, "pytorch-lightning_version": "2.5.0"}, path)
    assert ECLModule.load_from_checkpoint(path, map_location="cpu").loss_cfg.ramp_epochs == 3


def test_the_old_eval_tau_names_correction_tau(tmp_path):
    # Refused before the checkpoint is read (this one does not exist).
    cfg = compose_cfg([f"ckpt_path={tmp_path / 'nope.ckpt'}", "+tau=0.5"], tmp_path, config_name="eval")
    with pytest.raises(ConfigError, match=re.escape("tau is now correction_tau")):
        evaluate(cfg)
    assert compose_cfg(["correction_tau=0.5"], tmp_path, config_name="eval").correction_tau == 0.5
