"""The multi-expert network: K trunks (optionally sharing stem + first stages), each with a label head and, where
the configured losses use them, a distillation head and a projection head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigError, check_fuse_experts
from .backbones import TIMM_PREFIX, GlobalAvgPool, build_trunk
from .fused import fused_branch_features, unfusable_reason, use_fused
from .heads import build_head


class ExpertBranch(nn.Module):
    """The per-expert part of a trunk: its remaining stages, then its pool (global average pooling by default)."""

    def __init__(self, layers: list[nn.Module], pool: nn.Module | None = None):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.pool = pool if pool is not None else GlobalAvgPool()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.layers(x))


def projection_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    """MoCo v2 projection MLP: in -> hidden -> ReLU -> out (no BN)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


def expert_features(shared: nn.Module, branches: nn.ModuleList, x: Tensor, fused: bool = False) -> Tensor:
    """[B, ...] images -> [K, B, F] pooled features; the shared part runs once, the experts one by one or fused."""
    h = shared(x)
    if fused:
        return fused_branch_features(branches, h)
    return torch.stack([branch(h) for branch in branches])


def project_features(projectors: nn.ModuleList, feats: Tensor) -> Tensor:
    """[K, B, F] features -> [K, B, d] L2-normalised embeddings, expert k through projector k."""
    return F.normalize(torch.stack([p(f) for p, f in zip(projectors, feats, strict=True)]), dim=-1)


def timm_unfusable(backbone: str) -> str:
    """The message for fuse_experts=true with a timm backbone (checked before data loading and here)."""
    return (
        f"model.net.fuse_experts=true does not apply to model.net.backbone={backbone}: the fused path "
        "(models/fused.py) has rules for the package's own ResNets only; set model.net.fuse_experts=false (or auto, "
        "which runs timm experts one by one)"
    )


class MultiExpertNet(nn.Module):
    """K experts; stem + first `shared_stages` stages shared (0 = fully separate trunks, as in NCL).

    Distillation heads (`dist_head`) and projectors (`projector`) are built only when asked for: a module that gets
    no gradient stops a DDP run (Lightning's `ddp` does not look for unused parameters).

    `fuse_experts` (False | True | "auto") runs the K branches as one grouped computation (models/fused.py) with the
    same parameters and state_dict; "auto" fuses on CUDA only, and not where the backbone has no fused rule.

    `backbone="timm:<name>"` builds any timm model (models/timm_backbones.py), sized by `in_chans` and `img_size`.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        num_experts: int = 3,
        shared_stages: int = 0,
        in_chans: int = 3,
        head: str = "linear",
        head_scale: float = 16.0,
        dist_head: bool = True,
        projector: bool = True,
        proj_dim: int = 128,
        proj_hidden: int | None = None,
        backbone_kwargs: dict | None = None,
        fuse_experts: bool | str = False,
        img_size: int | None = None,
    ):
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        check_fuse_experts(fuse_experts)
        is_timm = backbone.startswith(TIMM_PREFIX)
        if is_timm and fuse_experts is True:  # refused before K timm models are built
            raise ConfigError(timm_unfusable(backbone))
        kwargs = dict(backbone_kwargs or {})
        if is_timm:
            kwargs["img_size"] = img_size
        trunks = [build_trunk(backbone, in_chans=in_chans, **kwargs) for _ in range(num_experts)]
        n_stages = len(trunks[0].stages)
        if not 0 <= shared_stages < n_stages:
            why = getattr(trunks[0], "unsplit_reason", None)
            raise ConfigError(
                f"model.net.shared_stages={shared_stages} is out of range for backbone {backbone!r}: "
                + (
                    f"it is not split into stages ({why}), so set model.net.shared_stages=0"
                    if why
                    else f"it has {n_stages} stages and at least one must stay per expert, so use 0 to {n_stages - 1}"
                )
            )
        self.num_experts, self.num_classes, self.feat_dim = num_experts, num_classes, trunks[0].out_dim
        self.shared_stages = shared_stages

        # Shared part taken from trunk 0; each expert keeps only its layers after it (the rest is dropped).
        n_shared = 1 + shared_stages if shared_stages > 0 else 0  # the stem counts as one layer
        layers = [[t.stem, *t.stages] for t in trunks]
        self.shared = nn.Sequential(*layers[0][:n_shared])
        self.branches = nn.ModuleList(ExpertBranch(ls[n_shared:], t.pool) for ls, t in zip(layers, trunks, strict=True))

        F_, K = self.feat_dim, num_experts
        self.heads = nn.ModuleList(build_head(head, F_, num_classes, head_scale) for _ in range(K))
        self.dist_heads = (
            nn.ModuleList(build_head(head, F_, num_classes, head_scale) for _ in range(K)) if dist_head else None
        )
        self.projectors = (
            nn.ModuleList(projection_mlp(F_, proj_hidden or F_, proj_dim) for _ in range(K)) if projector else None
        )

        reason = None
        if fuse_experts:
            reason = "timm backbones have no fused rules" if is_timm else unfusable_reason(self.branches)
        if reason and fuse_experts is True:
            raise ConfigError(
                f"model.net.fuse_experts=true is not supported for backbone {backbone!r}: {reason}; "
                "set model.net.fuse_experts=false (or auto)"
            )
        self.fuse_experts: bool | str = False if reason else fuse_experts

    def features(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [K, B, F] pooled features."""
        return expert_features(self.shared, self.branches, x, use_fused(self.fuse_experts, x, self.num_experts))

    def classify(self, feats: Tensor) -> tuple[Tensor, Tensor | None]:
        """[K, B, F] -> label logits [K, B, C] and distillation logits [K, B, C] (None without dist heads)."""
        logits = torch.stack([g(f) for g, f in zip(self.heads, feats, strict=True)])
        if self.dist_heads is None:
            return logits, None
        return logits, torch.stack([h(f) for h, f in zip(self.dist_heads, feats, strict=True)])

    def project(self, feats: Tensor) -> Tensor:
        """[K, B, F] -> [K, B, proj_dim], L2-normalised."""
        if self.projectors is None:
            raise RuntimeError("this MultiExpertNet was built without projectors (projector=False)")
        return project_features(self.projectors, feats)

    def forward(self, x: Tensor) -> dict[str, Tensor | None]:
        feats = self.features(x)
        logits, dist_logits = self.classify(feats)
        return {"feats": feats, "logits": logits, "dist_logits": dist_logits}
