"""MoCo v2 pieces, per expert: the momentum (EMA) key encoder, the key queue, and a cross-process gather."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .experts import MultiExpertNet, expert_features, project_features
from .fused import use_fused


class MomentumEncoder(nn.Module):
    """EMA key encoder of a MultiExpertNet: a copy of its trunks and projectors, moved towards the online network.

    `scope`: "all" averages the trunks and the projectors (MoCo); "backbone" the trunks only, so the key projector
    keeps its initial weights (NCL's code: lib/core/function.py averages `backbone` and `module` only).
    `copy_buffers`: copy the online batch-norm statistics at each update (else the key encoder keeps its own, as in
    NCL and MoCo). `init_from`: the network the EMA starts from (default `net`; NCL starts from an independently
    initialised network of the same architecture).
    """

    def __init__(
        self,
        net: MultiExpertNet,
        momentum: float = 0.999,
        scope: str = "all",
        copy_buffers: bool = True,
        init_from: MultiExpertNet | None = None,
    ):
        super().__init__()
        if scope not in ("all", "backbone"):
            raise ValueError(f"scope must be 'all' or 'backbone', got {scope!r}")
        if net.projectors is None:
            raise ValueError("a momentum encoder needs a MultiExpertNet built with projectors")
        source = net if init_from is None else init_from
        self.momentum, self.scope, self.copy_buffers = momentum, scope, copy_buffers
        self.shared = copy.deepcopy(source.shared)
        self.branches = copy.deepcopy(source.branches)
        self.projectors = copy.deepcopy(source.projectors)
        self.fuse_experts = net.fuse_experts  # the same fused or one-by-one path as the online network
        self.requires_grad_(False)

    def _parts(self, m: nn.Module) -> nn.ModuleList:
        return nn.ModuleList([m.shared, m.branches, *([m.projectors] if self.scope == "all" else [])])

    @torch.no_grad()
    def update(self, net: MultiExpertNet) -> None:
        """ema <- m * ema + (1 - m) * online for the parameters in scope; buffers copied if `copy_buffers`."""
        ema, online = self._parts(self), self._parts(net)
        ema_params = list(ema.parameters())
        online_params = [p.detach() for p in online.parameters()]
        # One fused kernel per dtype/device instead of a Python loop over hundreds of tensors.
        torch._foreach_lerp_(ema_params, online_params, 1.0 - self.momentum)
        if self.copy_buffers:
            for b_ema, b in zip(ema.buffers(), online.buffers(), strict=True):
                b_ema.copy_(b)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> keys [K, B, d], L2-normalised."""
        fused = use_fused(self.fuse_experts, x, len(self.branches))
        return project_features(self.projectors, expert_features(self.shared, self.branches, x, fused))


class KeyQueue(nn.Module):
    """Per-expert FIFO of past keys and their labels (-1 = empty slot); buffers, so it is checkpointed."""

    def __init__(self, num_experts: int, dim: int, size: int):
        super().__init__()
        self.size = size
        self.register_buffer("keys", F.normalize(torch.randn(num_experts, size, dim), dim=-1))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor) -> None:
        """Write keys [K, B, d] and labels [B] at ptr and advance it, wrapping around."""
        batch = keys.shape[1]
        if self.size % batch != 0:
            raise ValueError(
                f"the queue size ({self.size}) must be a multiple of the global batch ({batch}): "
                "change the queue size or the batch size, and use drop_last=True for training"
            )
        # Indices on the device: no host sync on ptr.
        idx = (self.ptr + torch.arange(batch, device=self.ptr.device)) % self.size
        self.keys[:, idx] = keys.to(self.keys.dtype)
        self.labels[idx] = labels.to(self.labels.dtype)
        self.ptr.copy_((self.ptr + batch) % self.size)


@torch.no_grad()
def concat_all_gather(t: Tensor, dim: int = 0) -> Tensor:
    """All-gather `t` across processes and concatenate along `dim` (no grad; keys [K, B, d] need dim=1).
    Identity when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out, dim=dim)
