"""Mixed precision on CPU: bf16-mixed trains with finite float32 losses; fp16 on CPU is named in a clear warning."""

import logging
import math

import pytest
import torch

from ecl_lightning.train import build
from helpers import compose_cfg, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bf16_mixed_trains_on_cpu_with_finite_losses(fmnist_dir, tmp_path):
    overrides = ["debug=fdr", "trainer.precision=bf16-mixed"] + tiny_overrides("fmnist_lt", {"fmnist": fmnist_dir})
    datamodule, model, trainer = build(compose_cfg(overrides, tmp_path))
    assert trainer.precision == "bf16-mixed" and trainer.accelerator.__class__.__name__ == "CPUAccelerator"
    head_dtypes = []

    def record(module, inputs, out) -> None:
        if module.training:
            head_dtypes.append(out.dtype)

    model.net.heads[0].register_forward_hook(record)

    trainer.fit(model, datamodule=datamodule)
    logged = trainer.callback_metrics
    assert head_dtypes == [torch.bfloat16]  # autocast was on in the (one) training step
    for term in ("train/loss", "train/loss_label", "train/loss_kd", "train/loss_feat", "train/loss_con"):
        assert logged[term].dtype == torch.float32 and math.isfinite(float(logged[term])), term

    trainer.test(model, datamodule=datamodule)
    assert math.isfinite(model.test_results["test/nll"]) and 0 <= model.test_results["test/acc"] <= 1


def test_fp16_mixed_on_cpu_says_what_runs(fmnist_dir, tmp_path, caplog):
    overrides = ["debug=fdr", "trainer.precision=16-mixed"] + tiny_overrides("fmnist_lt", {"fmnist": fmnist_dir})
    with caplog.at_level(logging.WARNING, logger="ecl_lightning"):
        _, _, trainer = build(compose_cfg(overrides, tmp_path))
    assert trainer.precision == "bf16-mixed"
    assert "trainer.precision=16-mixed" in caplog.text and "trainer.precision=bf16-mixed" in caplog.text
