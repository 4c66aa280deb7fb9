"""Every method (`model=`) and ablation variant (`variant=`) trains every parameter it builds (what Lightning's DDP
needs: a parameter without gradient stops a `ddp` run at step 2), and the MoCo update order options."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from ecl_lightning.config import ConfigError
from ecl_lightning.module import ECLModule

CONF = Path(__file__).parents[1] / "conf"
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
# the ablation variants; vit_deit_lt (a DeiT-B recipe for CIFAR) is tested in tests/models/test_timm_backbones.py
VARIANTS = sorted(p.stem for p in (CONF / "variant").glob("*.yaml") if p.stem != "vit_deit_lt")
COUNTS = [40, 26, 17, 11, 7, 5, 3, 2, 2, 1]
B = 8


def build(*overrides: str) -> ECLModule:
    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=["model.loss.queue_size=32", *overrides])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_"), model.pop("_convert_")
    return ECLModule(num_classes=10, class_counts=COUNTS, in_chans=1, **model)


def module_has_no_dist_heads(model: str) -> bool:
    return build(f"model={model}", "model.loss.reweight=none").net.dist_heads is None


def test_the_method_list_is_complete():
    assert {"ce", "balanced_softmax", "ncl", "ecl", "ecl_ncl", "sade", "balpoe", "ride", "ecl_sade"} <= set(MODELS)


@pytest.mark.parametrize("variant", [None, *VARIANTS])
@pytest.mark.parametrize("model", MODELS)
def test_every_built_parameter_gets_a_gradient(model, variant):
    torch.manual_seed(0)
    try:
        module = build(f"model={model}", *([f"variant={variant}"] if variant else []))
    except ConfigError as err:
        if variant and variant.startswith("experts_"):  # per-expert priors (SADE, BalPoE) fix the expert count
            assert "one per expert" in str(err), err
            assert build(f"model={model}").loss_cfg.label_tau is not None
            return
        # a re-weighting variant on a method without distillation heads: refused, named
        assert variant and variant.startswith("reweight_") and "dist_head" in str(err), err
        assert module_has_no_dist_heads(model)
        return
    x1, x2, y = torch.randn(B, 1, 28, 28), torch.randn(B, 1, 28, 28), torch.randint(0, 10, (B,))
    loss, terms, _ = module.compute_loss(x1, x2, y, epoch=10.0)  # past the warm-up ramps
    loss.backward()
    unused = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"model={model} variant={variant}: no gradient for {unused[:4]} ({len(unused)} in all)"
    c = module.loss_cfg
    assert (module.net.projectors is not None) == ("con" in terms)
    assert (module.net.dist_heads is not None) == (c.dist_head and "kd" in terms)


@pytest.mark.parametrize("order", ["before_keys", "after_keys"])
def test_moco_update_order(order):
    """before_keys (MoCo): the keys come from the encoder after this step's EMA update; after_keys (NCL's
    function.py): from the encoder as it was, and the update follows."""
    torch.manual_seed(0)
    module = build("model=ncl", "model.loss.moco_momentum=0.5", f"model.loss.moco_update={order}")
    module.train()
    x1, x2, y = torch.randn(B, 1, 28, 28), torch.randn(B, 1, 28, 28), torch.randint(0, 10, (B,))
    before = copy.deepcopy(module.momentum_encoder)
    after = copy.deepcopy(module.momentum_encoder)
    after.update(module.net)
    module.compute_loss(x1, x2, y, epoch=0.0)
    enqueued = module.queue.keys[:, :B]
    expected = (after if order == "before_keys" else before)(x2)
    other = (before if order == "before_keys" else after)(x2)
    assert torch.allclose(enqueued, expected, atol=1e-5)
    assert not torch.allclose(enqueued, other, atol=1e-3)
    for p_enc, p_after in zip(module.momentum_encoder.parameters(), after.parameters(), strict=True):
        assert torch.allclose(p_enc, p_after)  # one update per step either way
