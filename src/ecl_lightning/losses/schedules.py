"""Loss-weight schedules."""

from __future__ import annotations


def linear_ramp(epoch: float, warmup_epochs: float) -> float:
    """min(1, epoch / warmup_epochs): a weight ramping linearly from 0; 1.0 when warmup_epochs <= 0."""
    if warmup_epochs <= 0:
        return 1.0
    return float(min(1.0, max(0.0, epoch / warmup_epochs)))
