"""Learning-rate schedule and the linear scaling rule."""

from __future__ import annotations

import math

import pytest

from ecl_lightning.config import OptimConfig, ScheduleConfig
from ecl_lightning.optim import lr_factor, scaled_lr


def test_warmup_then_multistep():
    cfg = ScheduleConfig(name="multistep", warmup_epochs=2, milestones=[4, 6], gamma=0.1)
    f = [lr_factor(step, steps_per_epoch=10, total_steps=80, cfg=cfg, base_lr=0.1) for step in range(80)]
    assert f[0] == pytest.approx(1 / 20) and f[19] == pytest.approx(1.0)
    assert f[20] == 1.0 and f[39] == 1.0
    assert f[40] == pytest.approx(0.1) and f[59] == pytest.approx(0.1) and f[60] == pytest.approx(0.01)


def test_cosine_ends_at_min_lr():
    cfg = ScheduleConfig(name="cosine", warmup_epochs=0, min_lr=0.001)
    assert lr_factor(0, 10, 100, cfg, base_lr=0.1) == pytest.approx(1.0)
    assert lr_factor(50, 10, 100, cfg, base_lr=0.1) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_factor(100, 10, 100, cfg, base_lr=0.1) == pytest.approx(0.01)


def test_linear_scaling_rule():
    assert scaled_lr(OptimConfig(lr=0.2, base_batch_size=256), global_batch=512) == pytest.approx(0.4)
    assert scaled_lr(OptimConfig(lr=0.2), global_batch=512) == pytest.approx(0.2)
