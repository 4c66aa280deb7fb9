"""A trained checkpoint made ready for inference: the model under the chosen heads, its class names and the input
it expects. Shared by `predict` and `export`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from ecl_lightning.checkpoint import CheckpointError, read_checkpoint
from ecl_lightning.config import ConfigError
from ecl_lightning.data.input_spec import InputSpec
from ecl_lightning.evaluate import _data_config, _load_module
from ecl_lightning.instantiate import instantiate
from ecl_lightning.module import ECLModule


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as it is; a run directory (or its checkpoints/): the best-by-val checkpoint
    (epoch_*.ckpt, kept alone by the default callbacks), else last.ckpt. Neither: CheckpointError naming the path."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if folder.is_dir():
        best = sorted(folder.glob("epoch_*.ckpt"))
        if len(best) == 1:
            return best[0]
        if (folder / "last.ckpt").is_file():
            return folder / "last.ckpt"
        raise CheckpointError(
            f"ckpt_path={path}: {len(best)} epoch_*.ckpt and no last.ckpt in {folder}; pass the checkpoint file"
        )
    raise CheckpointError(f"ckpt_path={path} does not exist: give a .ckpt file or the directory of a run")


@dataclass
class LoadedModel:
    model: ECLModule
    class_names: list[str]
    spec: InputSpec
    heads: str
    ckpt_path: Path


def load_for_inference(cfg: DictConfig) -> LoadedModel:
    """The checkpoint `cfg.ckpt_path` in eval mode on the CPU, with `cfg.heads`; the input spec comes from the data
    config of its run (or `data=` given on the command line); class names from the checkpoint, else the class ids.
    The checkpoint is read as evaluate and train read it: a truncated or foreign file is a CheckpointError."""
    ckpt = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = read_checkpoint(ckpt)
    hparams = checkpoint["hyper_parameters"]
    model = _load_module(checkpoint, eval=dict(hparams.get("eval") or {}, heads=cfg.heads)).eval()
    del checkpoint
    datamodule = instantiate(_data_config(cfg, ckpt))
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
    return LoadedModel(model, list(names), spec, cfg.heads, ckpt)


def combine_heads(out: dict[str, Tensor | None], heads: str) -> Tensor:
    """The network's output -> the logits (B, num_classes) of `heads`, as `ECLModule.predict_logits` combines them
    (tests/test_predict_export.py checks that both agree)."""
    per_expert = out["logits"].float()
    if heads == "label+dist":
        per_expert = (per_expert + out["dist_logits"].float()) / 2
    if heads.startswith("expert"):
        return per_expert[int(heads.removeprefix("expert")) - 1]
    return per_expert.mean(0)


class NormalisedModel(nn.Module):
    """float images in [0, 1], (B, C, H, W) at the spec's size -> the chosen heads' logits (B, num_classes): the
    normalisation is inside, so an exported model needs only the resize and crop done by its caller. Holds the
    network only (no LightningModule: TorchScript cannot trace one outside a Trainer)."""

    def __init__(self, model: ECLModule, spec: InputSpec) -> None:
        super().__init__()
        self.net = model.net
        self.heads = model.eval_cfg.heads
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return combine_heads(self.net((images - self.mean) / self.std), self.heads)
