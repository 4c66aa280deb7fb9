"""Fused experts: K identically built expert branches run as one computation over channel-stacked activations.

A way of running the experts' own parameters, not a different parameterisation: the state_dict is the same with
fusion on or off, so checkpoints load either way. Per call, each layer's K weights are concatenated along the output
channels and run as one grouped convolution (groups = K x the layer's groups) on activations [B, K*C, H, W] in which
expert k owns channels k*C .. (k+1)*C - 1. Batch norm is one F.batch_norm over the stacked channels (per-channel
statistics, so the same numbers); in training its updated running statistics are written back into each expert's
buffers. Everything else (ReLU, max-pool, residual sums, global pooling) acts per channel already.

Rules exist for the package's own trunks only; timm backbones are refused (fuse_experts=true) or run one by one (auto).

Chosen over torch.func (stack_module_state + vmap): vmap's convolution rule turns a weight-batched conv into this same
grouped convolution anyway, while batch-norm running-stat updates under vmap need stacked copies of the buffers
written back by hand all the same; spelled out here, every step is plain tensor code that torch.compile traces whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision.models.resnet as tv
from torch import Tensor, nn
from torch.nn.modules._functions import SyncBatchNorm as SyncBatchNormFn

from .backbones import BasicBlock, GlobalAvgPool, PadShortcut, global_pool


def use_fused(setting: bool | str, x: Tensor, num_experts: int) -> bool:
    """Whether `fuse_experts=setting` runs fused for input `x`; "auto": on CUDA with K > 1 (see docs/performance.md)."""
    if setting == "auto":
        return x.is_cuda and num_experts > 1
    return bool(setting)


def fused_branch_features(branches: Sequence[nn.Module], h: Tensor) -> Tensor:
    """K ExpertBranch modules on the shared activation h [B, C, H, W] (or the image) -> [K, B, F], in one pass."""
    k = len(branches)
    x = torch.cat([h] * k, dim=1)  # cat, not repeat: keeps a channels_last layout
    x = _run([b.layers for b in branches], x)
    return global_pool(x).unflatten(1, (k, -1)).transpose(0, 1).contiguous()


def unfusable_reason(branches: Sequence[nn.Module]) -> str | None:
    """None when the branches can run fused; else why not (a module without a fused rule, or branches that differ)."""
    first = branches[0]
    for name, m in first.named_modules():
        others = [b.get_submodule(name) for b in branches[1:]]
        if any(type(o) is not type(m) for o in others):
            return f"the experts differ at {name!r}"
        if name == "" or type(m) in _BLOCKS:  # the ExpertBranch itself runs through its .layers
            continue
        if type(m) not in _LEAVES:
            return f"no fused rule for {type(m).__name__} (at {name!r})"
        if any(_signature(o) != _signature(m) for o in others):
            return f"the experts' {type(m).__name__} at {name!r} differ in shape or settings"
        if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            return f"padding_mode={m.padding_mode!r} at {name!r}"
    return None


def _signature(m: nn.Module) -> tuple:
    if isinstance(m, nn.Conv2d):
        return (m.weight.shape, m.stride, m.padding, m.dilation, m.groups, m.bias is None, m.padding_mode)
    if isinstance(m, nn.BatchNorm2d | nn.SyncBatchNorm):
        return (m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    if isinstance(m, PadShortcut):
        return (m.stride, m.pad)
    if isinstance(m, nn.MaxPool2d):
        return (m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    return ()


def _run(mods: Sequence[nn.Module], x: Tensor) -> Tensor:
    """Apply the K corresponding modules `mods` to the stacked activation x."""
    rule = _RULES.get(type(mods[0]))
    if rule is None:  # a module swapped in after construction
        raise TypeError(f"no fused rule for {type(mods[0]).__name__}: set model.net.fuse_experts=false")
    return rule(mods, x)


def _children(mods: Sequence[nn.Module], name: str) -> list:
    return [getattr(m, name) for m in mods]


def _sequential(mods: Sequence[nn.Sequential], x: Tensor) -> Tensor:
    for layers in zip(*mods, strict=True):
        x = _run(layers, x)
    return x


def _conv(mods: Sequence[nn.Conv2d], x: Tensor) -> Tensor:
    c = mods[0]
    weight = torch.cat([m.weight for m in mods])
    bias = None if c.bias is None else torch.cat([m.bias for m in mods])
    return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups * len(mods))


def _batch_norm(mods: Sequence[nn.BatchNorm2d], x: Tensor, norm: Callable = F.batch_norm) -> Tensor:
    """nn.BatchNorm2d.forward over the stacked channels; updated running statistics go back to each expert."""
    bn = mods[0]
    factor = 0.0 if bn.momentum is None else bn.momentum
    update = bn.training and bn.track_running_stats
    if update and bn.num_batches_tracked is not None:
        with torch.no_grad():
            torch._foreach_add_([m.num_batches_tracked for m in mods], 1)
        if bn.momentum is None:  # cumulative moving average, as in nn.BatchNorm2d
            factor = 1.0 / float(bn.num_batches_tracked)
    batch_stats = bn.training or bn.running_mean is None
    stats = bn.running_mean is not None and (not bn.training or bn.track_running_stats)
    mean = torch.cat([m.running_mean for m in mods]) if stats else None
    var = torch.cat([m.running_var for m in mods]) if stats else None
    weight = torch.cat([m.weight for m in mods]) if bn.affine else None
    bias = torch.cat([m.bias for m in mods]) if bn.affine else None
    out = norm(x, mean, var, weight, bias, batch_stats, factor, bn.eps)
    if update and stats:  # the norm updated the concatenated copies in place
        with torch.no_grad():
            torch._foreach_copy_([m.running_mean for m in mods], list(mean.chunk(len(mods))))
            torch._foreach_copy_([m.running_var for m in mods], list(var.chunk(len(mods))))
    return out


def _sync_batch_norm(mods: Sequence[nn.SyncBatchNorm], x: Tensor) -> Tensor:
    """nn.SyncBatchNorm (trainer.sync_batchnorm=true): statistics per channel across processes while training."""
    bn = mods[0]
    if not (bn.training and dist.is_available() and dist.is_initialized()):
        return _batch_norm(mods, x)
    group = bn.process_group or dist.group.WORLD
    world = dist.get_world_size(group)
    if world == 1:
        return _batch_norm(mods, x)

    def norm(x, mean, var, weight, bias, batch_stats, factor, eps):  # as nn.SyncBatchNorm.forward calls it
        return SyncBatchNormFn.apply(x, weight, bias, mean, var, eps, factor, group, world)

    return _batch_norm(mods, x, norm)


def _relu(mods: Sequence[nn.ReLU], x: Tensor) -> Tensor:
    return F.relu(x, inplace=mods[0].inplace)


def _max_pool(mods: Sequence[nn.MaxPool2d], x: Tensor) -> Tensor:
    m = mods[0]
    return F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)


def _identity(mods: Sequence[nn.Module], x: Tensor) -> Tensor:
    return x


def _global_avg_pool(mods: Sequence[GlobalAvgPool], x: Tensor) -> Tensor:
    return global_pool(x)  # a per-channel mean: the same on the stacked channels


def _pad_shortcut(mods: Sequence[PadShortcut], x: Tensor) -> Tensor:
    """Option A per expert: subsample, then zero-pad each expert's own channel block."""
    m = mods[0]
    nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    x = x[:, :, :: m.stride, :: m.stride]
    b, _, h, w = x.shape
    x = F.pad(x.reshape(b, len(mods), -1, h, w), (0, 0, 0, 0, *m.pad)).reshape(b, -1, h, w)
    return x.contiguous(memory_format=torch.channels_last) if nhwc else x


def _basic_block(mods: Sequence[BasicBlock], x: Tensor) -> Tensor:
    sub = lambda name, t: _run(_children(mods, name), t)
    out = F.relu(sub("bn1", sub("conv1", x)))
    out = sub("bn2", sub("conv2", out))
    return F.relu(out + sub("shortcut", x))


def _tv_block(mods: Sequence[tv.BasicBlock | tv.Bottleneck], x: Tensor) -> Tensor:
    """torchvision BasicBlock / Bottleneck (ReLU after every BN but the last, optional downsample shortcut)."""
    sub = lambda name, t: _run(_children(mods, name), t)
    convs = 3 if isinstance(mods[0], tv.Bottleneck) else 2
    out = x
    for i in range(1, convs + 1):
        out = sub(f"bn{i}", sub(f"conv{i}", out))
        if i < convs:
            out = F.relu(out)
    shortcut = x if mods[0].downsample is None else sub("downsample", x)
    return F.relu(out + shortcut)


_LEAVES: dict[type, Callable] = {
    nn.Conv2d: _conv,
    nn.BatchNorm2d: _batch_norm,
    nn.SyncBatchNorm: _sync_batch_norm,
    nn.ReLU: _relu,
    nn.MaxPool2d: _max_pool,
    nn.Identity: _identity,
    PadShortcut: _pad_shortcut,
    GlobalAvgPool: _global_avg_pool,
}
_BLOCKS: dict[type, Callable] = {
    nn.Sequential: _sequential,
    BasicBlock: _basic_block,
    tv.BasicBlock: _tv_block,
    tv.Bottleneck: _tv_block,
}
_RULES = {**_LEAVES, **_BLOCKS}
