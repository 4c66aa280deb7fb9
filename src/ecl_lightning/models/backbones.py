"""Backbone trunks (stem -> stages -> global average pool), built by name from a registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ecl_lightning.config import ConfigError

# The config key of a local weights file for a backbone (torchvision here, timm in timm_backbones.py).
PRETRAINED_KEY = "model.net.backbone_kwargs.pretrained_path"


class Trunk(nn.Module):
    """A network split as stem -> stages -> pool, so that the first stages can be shared.

    `pool` maps the last stage's output to the [B, F] feature: a global average pool for the CNNs here; for a timm
    model, its own post-stage layers (e.g. a ViT's final norm and class-token pick; models/timm_backbones.py).
    """

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], out_dim: int, pool: nn.Module | None = None):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.pool = pool if pool is not None else GlobalAvgPool()
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.pool(x)


def global_pool(x: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, C] spatial mean."""
    return x.mean(dim=(2, 3))


class GlobalAvgPool(nn.Module):
    """`global_pool` as a module (no parameters): the default end of a Trunk and of an expert branch."""

    def forward(self, x: Tensor) -> Tensor:
        return global_pool(x)


# ----------------------------------------------------------------------------- CIFAR-style ResNets


class PadShortcut(nn.Module):
    """He et al. (2016) option-A shortcut: subsample by stride, zero-pad channels (as in LDAM/NCL)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    """3x3 -> 3x3 residual block; shortcut "A" (zero-pad) or "B" (1x1 conv + BN) where the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = PadShortcut(in_planes, planes, stride)
            elif shortcut == "B":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )
            else:
                raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def cifar_resnet(
    widths: Sequence[int],
    blocks: Sequence[int],
    strides: Sequence[int],
    in_chans: int = 3,
    shortcut: str = "A",
) -> Trunk:
    """A CIFAR-style ResNet: 3x3 conv stem (width widths[0]) + one stage of BasicBlocks per width."""
    if not len(widths) == len(blocks) == len(strides):
        raise ValueError(f"widths {widths}, blocks {blocks} and strides {strides} must have the same length")
    stem = nn.Sequential(
        nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
    )
    stages, in_planes = [], widths[0]
    for width, n, stride in zip(widths, blocks, strides, strict=True):
        layers = []
        for i in range(n):
            layers.append(BasicBlock(in_planes, width, stride if i == 0 else 1, shortcut))
            in_planes = width
        stages.append(nn.Sequential(*layers))
    trunk = Trunk(stem, stages, out_dim=in_planes)
    _init_weights(trunk)
    return trunk


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet32(in_chans: int = 3, width: int = 1, shortcut: str = "A", widths: Sequence[int] | None = None) -> Trunk:
    """CIFAR ResNet-32 (He et al. 2016): 3 stages x 5 BasicBlocks, widths 16/32/64 (x width), option A.

    `widths` sets the three stage widths directly: [16, 24, 48] is RIDE's and SADE's `reduce_dimension` (with the
    stem and stage 1 shared, shared_stages: 1), which keeps 3 experts near one ResNet-32's compute.
    """
    stage_widths = list(widths) if widths is not None else [16 * width, 32 * width, 64 * width]
    if len(stage_widths) != 3:
        raise ValueError(f"resnet32 widths must have 3 entries (one per stage), got {stage_widths}")
    return cifar_resnet(stage_widths, [5, 5, 5], [1, 2, 2], in_chans, shortcut)


def resnet_small(
    in_chans: int = 1,
    widths: Sequence[int] = (16, 32, 64),
    blocks: Sequence[int] = (1, 1, 1),
    strides: Sequence[int] = (1, 2, 2),
    shortcut: str = "B",
) -> Trunk:
    """A small ResNet for 28x28 grey input (Fashion-MNIST): 3x3 stem, one BasicBlock per stage by default."""
    return cifar_resnet(list(widths), list(blocks), list(strides), in_chans, shortcut)


# ----------------------------------------------------------------------------- torchvision ResNets


def _torchvision_trunk(
    arch: str, in_chans: int = 3, pretrained_path: str | None = None, stage_planes: Sequence[int] | None = None
) -> Trunk:
    """torchvision `arch` cut into stem (conv1, bn1, relu, maxpool) + layer1..4; fc dropped.

    `stage_planes` (4 values, torchvision's default [64, 128, 256, 512]) rebuilds the stages whose planes differ:
    [64, 128, 192, 384] is RIDE's and SADE's `reduce_dimension` for ResNet-50 / ResNeXt-50 (model/fb_resnets/
    RIDEResNet.py: layer3_output_dim 192, layer4_output_dim 384), with layer1-2 shared (shared_stages: 2).
    """
    net = getattr(torchvision.models, arch)(weights=None)
    if in_chans != 3:
        net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    out_dim = net.fc.in_features
    if stage_planes is not None:
        out_dim = _rebuild_stages(net, list(stage_planes))
        if pretrained_path is not None:
            raise ValueError(
                "stage_planes changes the torchvision architecture, so pretrained_path cannot load into it"
            )
    if pretrained_path is not None:
        _load_torchvision_state(net, pretrained_path, arch)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    return Trunk(stem, [net.layer1, net.layer2, net.layer3, net.layer4], out_dim=out_dim)


def _rebuild_stages(net: torchvision.models.ResNet, planes: list[int]) -> int:
    """Rebuild layer1..4 of a torchvision ResNet with the given planes (its own _make_layer); the feature width."""
    default = [64, 128, 256, 512]
    if len(planes) != 4:
        raise ValueError(f"stage_planes must have 4 entries (layer1..4), got {planes}")
    layers = [net.layer1, net.layer2, net.layer3, net.layer4]
    block = type(layers[0][0])
    net.inplanes = 64
    for i, (p, d) in enumerate(zip(planes, default, strict=True)):
        if p == d and net.inplanes == (64 if i == 0 else default[i - 1] * block.expansion):
            net.inplanes = d * block.expansion
            continue
        layer = net._make_layer(block, p, len(layers[i]), stride=1 if i == 0 else 2)
        for m in layer.modules():  # torchvision's own initialisation of a ResNet
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        setattr(net, f"layer{i + 1}", layer)
    return planes[-1] * block.expansion


def _load_torchvision_state(net: nn.Module, path: str, arch: str) -> None:
    """Load a torchvision-format state_dict, strict on every key except fc.*; a file that is missing, unreadable or
    of another architecture is a ConfigError naming the key (one line from the command line, as for timm)."""
    if not Path(path).is_file():
        raise ConfigError(
            f"{PRETRAINED_KEY}={path}: no such file; give a local torchvision-format state_dict of {arch} "
            "(nothing is downloaded)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{PRETRAINED_KEY}={path} cannot be read as a state_dict ({cause})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{PRETRAINED_KEY}={path} holds a {type(state).__name__}, not a state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k: v.shape for k, v in net.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    mismatched = sorted(k for k in expected.keys() & state.keys() if state[k].shape != expected[k])
    if missing or unexpected or mismatched:
        raise ConfigError(
            f"{PRETRAINED_KEY}={path} is not a torchvision state_dict of {arch} with these backbone_kwargs: "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}, "
            f"{len(mismatched)} shape mismatches {mismatched[:3]}; give weights of this architecture"
        )
    net.load_state_dict(state, strict=False)  # strict on the trunk keys (checked above); fc stays at init


def resnet50(in_chans: int = 3, pretrained_path: str | None = None, stage_planes: Sequence[int] | None = None) -> Trunk:
    return _torchvision_trunk("resnet50", in_chans, pretrained_path, stage_planes)


def resnext50_32x4d(
    in_chans: int = 3, pretrained_path: str | None = None, stage_planes: Sequence[int] | None = None
) -> Trunk:
    return _torchvision_trunk("resnext50_32x4d", in_chans, pretrained_path, stage_planes)


def resnet152(
    in_chans: int = 3, pretrained_path: str | None = None, stage_planes: Sequence[int] | None = None
) -> Trunk:
    return _torchvision_trunk("resnet152", in_chans, pretrained_path, stage_planes)


BACKBONES: dict[str, Callable[..., Trunk]] = {
    "resnet32": resnet32,
    "resnet_small": resnet_small,
    "resnet50": resnet50,
    "resnext50_32x4d": resnext50_32x4d,
    "resnet152": resnet152,
}


TIMM_PREFIX = "timm:"


def build_trunk(name: str, in_chans: int = 3, img_size: int | None = None, **kwargs) -> Trunk:
    """Build a registered trunk by name, or any timm model as `timm:<name>` (models/timm_backbones.py); unknown
    names raise ValueError listing the registry. `img_size` (the input's side) is used by timm models only."""
    if name.startswith(TIMM_PREFIX):
        from .timm_backbones import timm_trunk  # timm is an optional dependency

        return timm_trunk(name.removeprefix(TIMM_PREFIX), in_chans=in_chans, img_size=img_size, **kwargs)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)} or timm:<name>")
    return BACKBONES[name](in_chans=in_chans, **kwargs)
