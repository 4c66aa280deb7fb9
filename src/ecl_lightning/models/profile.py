"""Model size: parameter counts, and per-image forward FLOPs of the shared part and of each expert.

FLOPs are counted by torch's FlopCounterMode, which counts convolutions and matrix products only (batch norm,
activations and pooling are left out) and counts one multiply-add as 2 FLOPs. Papers usually quote multiply-adds
as "FLOPs" (ResNet-50 at 224 px: "4.1 GFLOPs" = 4.1 G multiply-adds), so the summary gives both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .experts import MultiExpertNet

if TYPE_CHECKING:
    from ecl_lightning.data.interface import LongTailData

log = logging.getLogger("ecl_lightning")


def count_params(*modules: nn.Module | None) -> int:
    """Number of parameters (trainable or not) of the given modules together; None counts as 0."""
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add, convolutions and matmuls only) that `fn()` runs, without autograd."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class ModelSize:
    """Parameters and per-image forward FLOPs of a MultiExpertNet; an expert = its trunk part + label head."""

    params_total: int
    params_shared: int
    params_expert: list[int]  # per expert: its trunk part + label head (the network used to predict)
    params_train_heads: list[int]  # per expert: distillation head + projector (training only)
    flops_shared: int
    flops_expert: list[int]  # per expert, per image: its trunk part + label head
    input_shape: tuple[int, ...]

    @property
    def flops_inference(self) -> int:
        """Per-image FLOPs of an ensemble prediction: the shared part once, then every expert."""
        return self.flops_shared + sum(self.flops_expert)

    def summary(self) -> str:
        """One line for the run log."""
        experts = len(self.params_expert)
        per_expert = (
            f"{_m(self.params_expert[0])} (+{_m(self.params_train_heads[0])} training-only heads)"
            if len(set(self.params_expert)) == 1
            else " / ".join(_m(p) for p in self.params_expert)
        )
        flops = " / ".join(_g(f) for f in sorted(set(self.flops_expert)))
        return (
            f"{_m(self.params_total)} parameters: shared {_m(self.params_shared)}, {experts} expert(s) of "
            f"{per_expert}. Forward per {'x'.join(map(str, self.input_shape))} image: shared {_g(self.flops_shared)}, "
            f"per expert {flops}, ensemble {_g(self.flops_inference)} (1 multiply-add = 2 FLOPs)"
        )


def _m(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def _g(flops: int) -> str:
    return f"{flops / 2e9:.3f} GMACs"


def model_size(net: MultiExpertNet, input_shape: Sequence[int]) -> ModelSize:
    """Count parameters and run one zero image of `input_shape` (C, H, W) through `net` in eval mode.

    The net's train/eval flags are restored afterwards, and no batch-norm statistic is updated.
    """
    param = next(net.parameters())
    x = torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype)
    modes = {m: m.training for m in net.modules()}
    net.eval()
    try:
        with torch.no_grad():
            h = net.shared(x)
        flops_shared = count_flops(lambda: net.shared(x))
        flops_expert = [count_flops(lambda k=k: net.heads[k](net.branches[k](h))) for k in range(net.num_experts)]
    finally:
        for m, training in modes.items():
            m.train(training)
    dist_heads = net.dist_heads or [None] * net.num_experts
    projectors = net.projectors or [None] * net.num_experts
    return ModelSize(
        params_total=count_params(net),
        params_shared=count_params(net.shared),
        params_expert=[count_params(b, g) for b, g in zip(net.branches, net.heads, strict=True)],
        params_train_heads=[count_params(d, p) for d, p in zip(dist_heads, projectors, strict=True)],
        flops_shared=flops_shared,
        flops_expert=flops_expert,
        input_shape=tuple(int(s) for s in input_shape),
    )


def log_model_size(module, datamodule: LongTailData | None) -> None:
    """Log parameters and per-image forward cost of the shared part and of each expert of an ECLModule, and the
    momentum encoder's size; the input shape is one evaluation image of `datamodule` (no random numbers drawn)."""
    shape = _eval_input_shape(datamodule)
    if shape is None:
        return
    size = model_size(module.net, shape)
    encoder = getattr(module, "momentum_encoder", None)
    momentum = count_params(encoder) if encoder is not None else 0
    log.info("Model: %s; momentum encoder %.2f M parameters (EMA, not trained)", size.summary(), momentum / 1e6)


def _eval_input_shape(datamodule: LongTailData | None) -> tuple[int, ...] | None:
    for name in ("val_set", "test_set"):
        dataset = getattr(datamodule, name, None)
        if dataset is not None and len(dataset) > 0:
            return tuple(dataset[0][0].shape)
    return None
