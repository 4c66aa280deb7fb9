"""Any timm model as a Trunk (`model.net.backbone=timm:<name>`): random-initialised or from a local weights file,
sized by the data (`in_chans`; `img_size` for models that take it, e.g. ViTs), and cut into stem -> stages -> pool so
that the first stages can be shared by the experts (`model.net.shared_stages`).

The cut follows the model's own structure, the modules timm's `feature_info` lists as stage outputs:
- ViT (timm's VisionTransformer: vit_*, deit_* without a distillation token): stem = patch embedding, class token and
  position embedding; stages = the blocks in `vit_stages` consecutive groups (default 4, like a ResNet's 4 stages:
  ViT-S/B's 12 blocks in groups of 3; one block each below depth 4); pool = final norm, class-token (or average)
  pooling and fc_norm.
- `stem` + `stages` + `head` models (ConvNeXt, CSPNet, ResNetV2...): stages = the `stages` children; pool = the layers
  between the stages and the head (ConvNeXt's norm_pre), then the head up to its logits (pooling, norm).
- ResNet-like (conv1 ... layer1..layerN, global_pool, fc): stem = the layers before layer1; pool = global_pool.
Each cut is checked when built: the split trunk must give the model's own pooled features (`model(x)` with
num_classes=0) on a probe batch, with every parameter kept. A model that fits no family, or whose cut does not
reproduce it, is kept whole as one stage (then model.net.shared_stages must be 0) and the run log says why.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import re
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from ecl_lightning.config import ConfigError
from ecl_lightning.models.backbones import PRETRAINED_KEY

from .backbones import Trunk

log = logging.getLogger("ecl_lightning")

# timm.create_model arguments the package sets itself (from the data, or to get pooled features without a classifier).
RESERVED_KWARGS = ("in_chans", "img_size", "num_classes", "pretrained", "pretrained_cfg_overlay", "features_only")


def import_timm():
    """timm, or a ConfigError saying how to install it (it is the optional extra `timm`)."""
    try:
        import timm
    except ImportError:
        raise ConfigError(
            "model.net.backbone=timm:... needs timm, an optional dependency: pip install 'ecl_lightning[timm]'"
        ) from None
    return timm


def check_timm_backbone(name: str, kwargs: dict) -> None:
    """The checks that need no model built (run on the config before any data is read): timm is installed, knows
    `name`, the package's own keys are not set, and `pretrained_path` is a file."""
    timm = import_timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        raise ConfigError(
            f"model.net.backbone=timm:{name}: timm {timm.__version__} has no model {name!r}"
            + (f" (close: {', '.join(close)})" if close else "")
            + "; list the names with python -c \"import timm; print(timm.list_models('*vit*'))\""
        )
    reserved = [k for k in RESERVED_KWARGS if k in kwargs]
    if reserved:
        raise ConfigError(
            f"model.net.backbone_kwargs.{reserved[0]} is set by the package for timm backbones (in_chans and img_size "
            "from the data, no classifier: the experts have their own heads, pretrained weights via pretrained_path)"
        )
    path = kwargs.get("pretrained_path")
    if path is not None and not Path(path).is_file():
        raise ConfigError(
            f"{PRETRAINED_KEY}={path}: no such file; give a local state_dict of timm:{name} "
            "(.pth, .pt, .bin or .safetensors; nothing is downloaded)"
        )


def timm_trunk(
    name: str,
    in_chans: int = 3,
    img_size: int | None = None,
    pretrained_path: str | None = None,
    vit_stages: int | None = None,
    **timm_kwargs,
) -> Trunk:
    """timm model `name` (no classifier) as a Trunk; `timm_kwargs` go to timm.create_model (e.g. depth=2 for a
    small ViT, drop_path_rate=0.1). `vit_stages`: how many groups a ViT's blocks are cut into (default 4)."""
    check_timm_backbone(name, {**timm_kwargs, "pretrained_path": pretrained_path})
    model = _create(name, in_chans, img_size, timm_kwargs)
    if pretrained_path is not None:
        load_timm_weights(model, pretrained_path, name)
    if vit_stages is not None and not _is_vit(model):
        raise ConfigError(f"model.net.backbone_kwargs.vit_stages is for ViT backbones; timm:{name} is not one")
    probe = _probe_input(model, in_chans, img_size)
    reference = _pooled_features(model, probe, name)
    n_params = sum(p.numel() for p in model.parameters())

    parts, reason = _cut(model, vit_stages)
    if parts is not None:
        stem, stages, pool, undo = parts
        trunk = Trunk(stem, stages, out_dim=reference.shape[1], pool=pool)
        reason = _mismatch(trunk, probe, reference, n_params)
        if reason is None:
            return trunk.train(model.training)
        undo()  # put the model back together, then keep it whole
    log.info("timm:%s is kept whole (one stage, model.net.shared_stages=0 only): %s", name, reason)
    trunk = Trunk(nn.Identity(), [WholeModel(model)], out_dim=reference.shape[1], pool=nn.Identity())
    trunk.unsplit_reason = reason
    return trunk


# ----------------------------------------------------------------------------- building and checking


def _create(name: str, in_chans: int, img_size: int | None, kwargs: dict) -> nn.Module:
    """timm.create_model without a classifier and without weights; `img_size` only where the model takes it."""
    timm = import_timm()
    args = {"pretrained": False, "num_classes": 0, "in_chans": in_chans, **kwargs}
    try:
        if img_size is not None:
            try:
                return timm.create_model(name, img_size=img_size, **args)
            except TypeError as err:  # a CNN: its constructor has no img_size (it takes any size)
                if "img_size" not in str(err):
                    raise
        return timm.create_model(name, **args)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        raise ConfigError(f"model.net.backbone_kwargs for timm:{name}: {_first_line(err)}") from None


def _probe_input(model: nn.Module, in_chans: int, img_size: int | None) -> Tensor:
    """A fixed random batch of 2 images at the run's size (else the model's default input size)."""
    size = img_size or model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    return torch.randn(2, in_chans, size, size, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _pooled_features(model: nn.Module, x: Tensor, name: str) -> Tensor:
    """model(x) in eval mode: [2, F] pooled features; a ConfigError where the model cannot take this input."""
    training = model.training
    model.eval()
    try:
        out = model(x)
    except (RuntimeError, AssertionError, ValueError) as err:
        shape = "x".join(map(str, x.shape[1:]))
        raise ConfigError(
            f"model.net.backbone=timm:{name} does not run on {shape} images ({_first_line(err)}); downsample less "
            "through model.net.backbone_kwargs (e.g. patch_size for a ViT or a ConvNeXt) or use larger images"
        ) from None
    finally:
        model.train(training)
    if out.dim() != 2:
        raise ConfigError(
            f"model.net.backbone=timm:{name} gives features of shape {list(out.shape)}, not pooled [batch, features]: "
            "leave its global_pool at the default"
        )
    return out


@torch.no_grad()
def _mismatch(trunk: Trunk, x: Tensor, reference: Tensor, n_params: int) -> str | None:
    """None when the cut trunk reproduces the whole model (same output, same parameters); else why not."""
    if sum(p.numel() for p in trunk.parameters()) != n_params:
        return "the stem/stages/pool cut does not keep every parameter"
    training = trunk.training
    trunk.eval()
    try:
        out = trunk(x)
    except Exception as err:  # a cut that runs the layers out of order
        return f"the stem/stages/pool cut does not run ({_first_line(err)})"
    finally:
        trunk.train(training)
    if out.shape != reference.shape or not torch.allclose(out, reference, rtol=1e-4, atol=1e-5):
        return "the stem/stages/pool cut does not reproduce the model's forward"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


# ----------------------------------------------------------------------------- the cuts


class WholeModel(nn.Module):
    """A timm model (num_classes=0) as one stage: image -> pooled features."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class ViTStem(nn.Module):
    """A VisionTransformer without its blocks and final norm: patch embedding, prefix tokens, position embedding."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, x: Tensor) -> Tensor:
        return self.vit.forward_features(x)  # its blocks and norm are removed (identity), so this ends at the tokens


class ViTPool(nn.Module):
    """A VisionTransformer's end: final norm, token pooling (class token, average, max or attention), fc_norm."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.norm, self.fc_norm, self.head_drop = vit.norm, vit.fc_norm, vit.head_drop
        self.attn_pool = getattr(vit, "attn_pool", None)
        self.pool_type, self.num_prefix_tokens = vit.global_pool, vit.num_prefix_tokens
        self.include_prefix = getattr(vit, "pool_include_prefix", False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        if self.attn_pool is not None:
            x = self.attn_pool(x if self.include_prefix else x[:, self.num_prefix_tokens :])
        elif self.pool_type == "token":
            x = x[:, 0]
        elif self.pool_type:
            x = x if self.include_prefix else x[:, self.num_prefix_tokens :]
            mean, top = x.mean(dim=1), x.amax(dim=1)
            x = {"avg": mean, "max": top, "avgmax": 0.5 * (mean + top)}[self.pool_type]
        return self.head_drop(self.fc_norm(x))


class HeadPool(nn.Module):
    """The layers after a CNN's last stage (`post`, e.g. ConvNeXt's norm_pre), then its head up to the logits."""

    def __init__(self, post: nn.Module, head: nn.Module):
        super().__init__()
        self.post, self.head = post, head
        self.pre_logits = "pre_logits" in inspect.signature(head.forward).parameters

    def forward(self, x: Tensor) -> Tensor:
        x = self.post(x)
        return self.head(x, pre_logits=True) if self.pre_logits else self.head(x)


def _is_vit(model: nn.Module) -> bool:
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(model, VisionTransformer)


def _cut(model: nn.Module, vit_stages: int | None):
    """((stem, stages, pool, undo), None) for a model of a known family, else (None, why not). `undo` restores the
    model where the cut changed it (the ViT's)."""
    children = dict(model.named_children())
    names = list(children)
    if _is_vit(model):
        return _cut_vit(model, vit_stages), None
    if {"stem", "stages", "head"} <= children.keys() and isinstance(model.stages, nn.Sequential):
        i, j = names.index("stages"), names.index("head")
        if i < j == len(names) - 1:
            stem = nn.Sequential(*(children[n] for n in names[:i]))
            post = nn.Sequential(*(children[n] for n in names[i + 1 : j]))
            return (stem, list(model.stages), HeadPool(post, model.head), lambda: None), None
    layers = [n for n in names if re.fullmatch(r"layer\d+", n)]
    if layers and names[-2:] == ["global_pool", "fc"]:
        first, last = names.index(layers[0]), names.index(layers[-1])
        if names[first : last + 1] == layers and last == len(names) - 3:
            drop = getattr(model, "drop_rate", 0.0)
            pool = nn.Sequential(model.global_pool, *([nn.Dropout(drop)] if drop else []), model.fc)
            stem = nn.Sequential(*(children[n] for n in names[:first]))
            return (stem, [children[n] for n in layers], pool, lambda: None), None
    return None, (
        f"{type(model).__name__} is none of the structures cut here (a timm VisionTransformer; stem + stages + head; "
        "conv1 ... layer1..N + global_pool + fc)"
    )


def _cut_vit(vit: nn.Module, groups: int | None):
    """The blocks in `groups` consecutive groups (default: 4, or one per block when fewer; the first groups one
    block longer where they do not divide)."""
    blocks = list(vit.blocks)
    groups = min(4, len(blocks)) if groups is None else groups
    if not 1 <= groups <= len(blocks):
        raise ConfigError(
            f"model.net.backbone_kwargs.vit_stages={groups} must be between 1 and the ViT's depth ({len(blocks)})"
        )
    size, extra = divmod(len(blocks), groups)
    bounds = [k * size + min(k, extra) for k in range(groups + 1)]
    stages = [nn.Sequential(*blocks[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    pool = ViTPool(vit)
    saved = {n: getattr(vit, n) for n in ("blocks", "norm", "fc_norm", "head_drop", "attn_pool") if hasattr(vit, n)}

    def undo() -> None:
        for n, m in saved.items():
            setattr(vit, n, m)

    vit.blocks, vit.norm, vit.fc_norm, vit.head_drop = nn.Sequential(), nn.Identity(), nn.Identity(), nn.Identity()
    if hasattr(vit, "attn_pool"):
        vit.attn_pool = None
    return ViTStem(vit), stages, pool, undo


# ----------------------------------------------------------------------------- weights from a local file


def load_timm_weights(model: nn.Module, path: str, name: str) -> None:
    """Load a local state_dict (a timm/PyTorch file or .safetensors; the `state_dict` or `model` entry of a training
    checkpoint) into `model` strictly, after timm's own conversions for this architecture (position embeddings
    resampled to the model's grid, first conv adapted to in_chans); its classifier is dropped. Nothing is downloaded.
    A file that does not fit raises a one-line ConfigError with the counts of missing, unexpected and reshaped keys."""
    timm = import_timm()
    try:
        state = _read_state(path)
    except Exception as err:
        raise ConfigError(f"{PRETRAINED_KEY}={path} cannot be read as a state_dict ({_first_line(err)})") from None
    cfg = model.pretrained_cfg
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        # weights of another architecture can break the conversion: then the key comparison below says what differs
        with contextlib.suppress(Exception):
            state = filter_fn(dict(state), model)
    classifiers = cfg.get("classifier") or ()
    for classifier in (classifiers,) if isinstance(classifiers, str) else classifiers:
        state.pop(f"{classifier}.weight", None), state.pop(f"{classifier}.bias", None)
    expected = model.state_dict()
    first_conv = cfg.get("first_conv")
    key = f"{first_conv}.weight" if isinstance(first_conv, str) else None
    if key in state and key in expected and state[key].dim() == 4 and state[key].shape[1] != expected[key].shape[1]:
        state[key] = timm.models.adapt_input_conv(expected[key].shape[1], state[key])  # e.g. RGB -> grey: summed
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if state[k].shape != expected[k].shape)
    if missing or unexpected or reshaped:
        raise ConfigError(
            f"{PRETRAINED_KEY}={path} does not fit timm:{name} with these backbone_kwargs: {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}, {len(reshaped)} shape mismatches "
            f"{reshaped[:3]}; give weights of this architecture"
        )
    model.load_state_dict(state)


def _read_state(path: str) -> dict[str, Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError("not a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}
