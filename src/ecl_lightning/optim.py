"""Optimiser and per-step learning-rate schedule (linear warm-up, then multistep / cosine / constant)."""

from __future__ import annotations

import math

import torch

from ecl_lightning.config import OptimConfig, ScheduleConfig


def build_optimizer(params, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) or AdamW over `params` at learning rate `lr` (already batch-scaled)."""
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)


def scaled_lr(cfg: OptimConfig, global_batch: int | None) -> float:
    """Linear scaling rule: lr * global_batch / base_batch_size when base_batch_size is set, else lr."""
    if cfg.base_batch_size is None or global_batch is None:
        return cfg.lr
    return cfg.lr * global_batch / cfg.base_batch_size


def lr_factor(step: int, steps_per_epoch: float, total_steps: int, cfg: ScheduleConfig, base_lr: float) -> float:
    """Multiplier of the base lr at optimiser step `step` (0-based); epochs may be fractional."""
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    epoch = step / steps_per_epoch
    if cfg.name == "multistep":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.name == "cosine":
        span = max(total_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        floor = cfg.min_lr / base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0
