"""Read a checkpoint once (weights only), and say in config terms why it does not fit the data or the model, before
anything is trained or tested: a truncated file, other image channels or classes, another model config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ecl_lightning.config import ConfigError

MAX_SHOWN = 3  # differing config values / state-dict keys quoted in a message
# Model config values that change which weights exist: listed first when a checkpoint does not fit.
STRUCTURAL = ("model.net.", "model.loss.dist_head", "model.loss.contrastive", "model.loss.con_weight",
              "model.loss.queue_size", "model.loss.proj", "model.loss.reweight")  # fmt: skip


class CheckpointError(ConfigError):
    """A checkpoint cannot be read or does not fit this run; the message names the file and what to do."""


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint as a dict, loaded with `weights_only=True` (memory-mapped: the weights are not read yet).

    A missing, truncated or foreign file raises CheckpointError naming `key=path`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{key}={path} does not exist (or is not a file): give the path of a .ckpt file")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # mmap refuses broken and legacy files with its own message: read plainly for the cause
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip reader (truncated), unpickler (weights_only refused), OSError...
        cause = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{key}={path} cannot be read ({type(err).__name__}: {cause}): the file is truncated or corrupt "
            "(a copy or save cut short?); use another checkpoint, e.g. checkpoints/last.ckpt of the same run"
        ) from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{key}={path} is not a Lightning checkpoint (no state_dict): give a .ckpt of a run")
    if not isinstance(ckpt.get("hyper_parameters"), dict) or "num_classes" not in ckpt["hyper_parameters"]:
        raise CheckpointError(
            f"{key}={path} has no ECLModule hyper-parameters: give a checkpoint of an ecl_lightning run"
        )
    return ckpt


def check_data_fits(ckpt: dict, path: str | Path, num_classes: int, in_chans: int, data_name: str) -> None:
    """The data gives the images (channels) and classes the checkpoint's network was trained on."""
    hparams = ckpt["hyper_parameters"]
    trained = (int(hparams.get("in_chans", 3)), int(hparams["num_classes"]))
    if trained != (in_chans, num_classes):
        raise CheckpointError(
            f"checkpoint {path} was trained on {trained[0]}-channel images with {trained[1]} classes; "
            f"data={data_name} gives {in_chans}-channel images with {num_classes} classes: use the data it was "
            "trained on (data=<that dataset>, or leave data out to take the checkpoint run's config.yaml)"
        )


def _flat(values: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix: values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(_flat(value, f"{prefix}.{key}"))
    return flat


def config_differences(saved: dict, current: dict, groups: tuple[str, ...] = ("net", "loss")) -> list[str]:
    """`model.loss.dist_head: checkpoint False, this run True` for each differing value of the model groups."""
    old = {k: v for g in groups for k, v in _flat(saved.get(g) or {}, f"model.{g}").items()}
    new = {k: v for g in groups for k, v in _flat(current.get(g) or {}, f"model.{g}").items()}
    missing = object()
    differing = [k for k in sorted(old.keys() | new.keys()) if old.get(k, missing) != new.get(k, missing)]
    differing.sort(key=lambda k: not (k.startswith(STRUCTURAL) and k != "model.net.fuse_experts"))
    return [f"{key}: checkpoint {old.get(key, 'unset')}, this run {new.get(key, 'unset')}" for key in differing]


def check_model_fits(ckpt: dict, path: str | Path, model: torch.nn.Module, hparams: dict) -> None:
    """The checkpoint's weights load into `model` (same keys and shapes); otherwise name the differing model config
    values (from the saved hyper-parameters) and a few of the differing weights, instead of torch's key dump."""
    saved, current = ckpt["state_dict"], model.state_dict()
    missing = sorted(current.keys() - saved.keys())
    unexpected = sorted(saved.keys() - current.keys())
    reshaped = sorted(k for k in current.keys() & saved.keys() if tuple(current[k].shape) != tuple(saved[k].shape))
    if not (missing or unexpected or reshaped):
        return
    counts = [
        f"{len(v)} {what}"
        for v, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
        if v
    ]
    examples = ", ".join((missing + unexpected + reshaped)[:MAX_SHOWN])
    differences = config_differences(ckpt["hyper_parameters"], hparams)
    config = "; ".join(differences[:MAX_SHOWN]) + (
        f"; and {len(differences) - MAX_SHOWN} more" if len(differences) > MAX_SHOWN else ""
    )
    raise CheckpointError(
        f"ckpt_path={path} does not fit this model ({', '.join(counts)} weights, e.g. {examples}); "
        f"{'its model config differs: ' + config if differences else 'the saved model config is the same'}. "
        "Resume with the model config the checkpoint was trained with, or start a new run without ckpt_path"
    )
