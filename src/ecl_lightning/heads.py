"""`heads`, the test-time choice of logits (`label`, `label+dist`, `expert<k>`), parsed once into a typed value that
the module, inference/export and the shifted-prior evaluation apply the same way."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

_EXPERT = re.compile(r"expert([1-9]\d*)")


def expert_number(name: str) -> int | None:
    """`expert3` -> 3 (a `heads` value or a metric's head name); None for any other name."""
    match = _EXPERT.fullmatch(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Heads:
    """Which logits a prediction uses: each expert's label head, or its label and distillation heads averaged
    (`dist`); the ensemble over all experts, or one expert (`expert`, numbered from 1)."""

    dist: bool = False
    expert: int | None = None

    @classmethod
    def parse(cls, value: str, key: str = "model.eval.heads") -> Heads:
        """`label` | `label+dist` | `expert<k>`; anything else raises ConfigError naming `key`."""
        if value == "label":
            return cls()
        if value == "label+dist":
            return cls(dist=True)
        k = expert_number(value) if isinstance(value, str) else None
        if k is None:
            from ecl_lightning.config import ConfigError  # config.py imports this module for EvalConfig

            raise ConfigError(f"{key}={value!r} is not one of label, label+dist, expert1, expert2, ...")
        return cls(expert=k)

    def __str__(self) -> str:
        return f"expert{self.expert}" if self.expert is not None else ("label+dist" if self.dist else "label")

    def check_model(self, num_experts: int, has_dist_heads: bool, key: str = "model.eval.heads") -> None:
        """The model has the heads this value names (distillation heads, expert k)."""
        from ecl_lightning.config import ConfigError

        if self.dist and not has_dist_heads:
            raise ConfigError(
                f"{key}=label+dist needs distillation heads (model.loss.dist_head=true with "
                "model.loss.kd_weight > 0 and more than one expert)"
            )
        if self.expert is not None and self.expert > num_experts:
            raise ConfigError(f"{key}={self} but the model has {num_experts} expert(s)")

    def per_expert(self, label: Tensor, dist: Tensor | None) -> Tensor:
        """Each expert's logits [K, ...]: its label head, or the mean of its label and distillation heads."""
        return (label + dist) / 2 if self.dist else label

    def selected(self, per_expert: Tensor) -> Tensor:
        """The experts this value uses, [K, ...] or [1, ...] for `expert<k>`."""
        return per_expert if self.expert is None else per_expert[self.expert - 1 : self.expert]

    def ensemble(self, per_expert: Tensor) -> Tensor:
        """The prediction [...]: the mean over the experts, or expert k's logits."""
        return per_expert.mean(0) if self.expert is None else per_expert[self.expert - 1]
