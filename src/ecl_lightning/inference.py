"""A trained checkpoint made ready for inference: the model under the chosen heads, its class names and the input
it expects. Shared by `predict` and `export`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from ecl_lightning.config import ConfigError
from ecl_lightning.data.input_spec import InputSpec
from ecl_lightning.heads import Heads
from ecl_lightning.instantiate import instantiate
from ecl_lightning.module import ECLModule
from ecl_lightning.plan import plan_checkpoint


def load_module(checkpoint: Mapping, **overrides) -> ECLModule:
    """ECLModule from an already read checkpoint (its saved hyper-parameters, `overrides` on top) with its weights;
    as `load_from_checkpoint`, saved values that are no longer arguments are left out."""
    params = inspect.signature(ECLModule).parameters
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in params}
    model = ECLModule(**{**hparams, **overrides})
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model


@dataclass
class LoadedModel:
    model: ECLModule
    class_names: list[str]
    spec: InputSpec
    heads: Heads
    ckpt_path: Path


def load_for_inference(cfg: DictConfig) -> LoadedModel:
    """The checkpoint `cfg.ckpt_path` in eval mode on the CPU, with `cfg.heads`; the input spec comes from the data
    config of its run (or `data=` given on the command line); class names from the checkpoint, else the class ids.
    The checkpoint is planned as evaluate plans it (plan.plan_checkpoint)."""
    run = plan_checkpoint(cfg)
    hparams = run.hparams
    model = load_module(run.checkpoint, eval=run.eval_config).eval()
    datamodule = instantiate(run.data)
    if not hasattr(datamodule, "input_spec"):
        raise ConfigError(
            f"{type(datamodule).__name__} does not say what input its models expect (input_spec, data/interface.py)"
        )
    spec = datamodule.input_spec()
    if spec.channels != model.hparams.get("in_chans", 3):
        raise ConfigError(
            f"the data config gives {spec.channels}-channel images, the checkpoint was trained on "
            f"{model.hparams.get('in_chans')}: pass the data config of its run (data=... or its config.yaml)"
        )
    names = hparams.get("class_names") or [str(c) for c in range(model.num_classes)]
    return LoadedModel(model, list(names), spec, model.heads, run.ckpt_path)


def combine_heads(out: dict[str, Tensor | None], heads: Heads) -> Tensor:
    """The network's output -> the logits (B, num_classes) of `heads`, as `ECLModule.predict_logits` combines them
    (tests/test_predict_export.py checks that both agree)."""
    dist = out["dist_logits"].float() if heads.dist else None
    return heads.ensemble(heads.per_expert(out["logits"].float(), dist))


class NormalisedModel(nn.Module):
    """float images in [0, 1], (B, C, H, W) at the spec's size -> the chosen heads' logits (B, num_classes): the
    normalisation is inside, so an exported model needs only the resize and crop done by its caller. Holds the
    network only (no LightningModule: TorchScript cannot trace one outside a Trainer)."""

    def __init__(self, model: ECLModule, spec: InputSpec) -> None:
        super().__init__()
        self.net = model.net
        self.heads = model.heads
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return combine_heads(self.net((images - self.mean) / self.std), self.heads)
