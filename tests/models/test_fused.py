"""Fused experts (models/fused.py) compute what the experts run one by one compute, with the same parameters.

Gradients are compared in float64. In float32 the two paths round differently (~1e-7 relative, as the outputs show),
and a pre-activation that lands within that distance of 0 takes the other side of a ReLU: the gradient then really
differs by one element's contribution (seen: 2% of a deep conv's largest gradient entry in resnet32, one seed in four).
In float64 no such flip is plausible, so everything must agree to rounding (1e-9 relative).
"""

import copy
from collections.abc import Callable

import pytest
import torch
import torchvision.models.resnet as tv
from torch import nn

from ecl_lightning.config import ConfigError, NetConfig
from ecl_lightning.models import BACKBONES, MomentumEncoder, MultiExpertNet, Trunk, build_trunk
from ecl_lightning.models.fused import unfusable_reason, use_fused
from ecl_lightning.module import ECLModule
from ecl_lightning.train import train
from helpers import compose_cfg, tiny_overrides

CASES = [("resnet_small", 1, 16), ("resnet32", 3, 16)]  # small images: float64 convolutions are slow on CPU
F64 = {"rtol": 1e-9, "atol": 1e-12}


def pair(backbone: str, in_chans: int, shared_stages: int, k: int = 3, **kw) -> tuple[MultiExpertNet, MultiExpertNet]:
    """(one by one, fused): the same network, run both ways."""
    net = MultiExpertNet(backbone, 10, k, shared_stages, in_chans=in_chans, proj_dim=8, **kw)
    fused = copy.deepcopy(net)
    fused.fuse_experts = True
    return net, fused


def step(net: MultiExpertNet, x: torch.Tensor) -> dict:
    """Forward and backward through every head; the outputs."""
    out = net(x)
    loss = out["logits"].square().mean() + out["dist_logits"].logsumexp(-1).mean() + net.project(out["feats"]).sum()
    loss.backward()
    return out


def assert_same_state(a: nn.Module, b: nn.Module, **tol) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sb[key], sa[key], **tol, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize(("backbone", "in_chans", "size"), CASES)
@pytest.mark.parametrize("shared_stages", [0, 1])
def test_train_step_matches(backbone, in_chans, size, shared_stages):
    net, fused = (m.double() for m in pair(backbone, in_chans, shared_stages))
    x = torch.randn(4, in_chans, size, size, dtype=torch.float64)
    ref, out = step(net, x), step(fused, x)
    for key in ("feats", "logits", "dist_logits"):
        torch.testing.assert_close(out[key], ref[key], **F64)
    for (name, p), q in zip(net.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, **F64, msg=lambda m, name=name: f"grad of {name}: {m}")
    assert_same_state(net, fused, **F64)  # running means/vars and num_batches_tracked updated alike


@pytest.mark.parametrize(("backbone", "in_chans", "size"), CASES)
@pytest.mark.parametrize("shared_stages", [0, 1])
@pytest.mark.parametrize("train", [True, False])
def test_float32_outputs_match(backbone, in_chans, size, shared_stages, train):
    net, fused = pair(backbone, in_chans, shared_stages)
    net.train(train), fused.train(train)
    x = torch.randn(4, in_chans, size, size)
    ref, out = net(x), fused(x)
    for key in ("feats", "logits"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-5, atol=1e-5 * ref[key].abs().max().item())
    assert_same_state(net, fused, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
def test_channels_last(train):
    net, fused = pair("resnet32", 3, 1)
    fused = fused.to(memory_format=torch.channels_last).train(train)
    net.train(train)
    x = torch.randn(4, 3, 32, 32)
    ref = step(net, x)
    out = step(fused, x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out["logits"], ref["logits"], rtol=1e-5, atol=1e-5 * ref["logits"].abs().max().item())
    assert all(p.grad is not None for p in fused.parameters())


def test_checkpoint_loads_either_way():
    """A fused model's state_dict (after an optimiser step) loads, strictly, into an unfused one: same outputs."""
    net, fused = pair("resnet32", 3, 1)
    opt = torch.optim.SGD(fused.parameters(), lr=0.1)
    step(fused, torch.randn(4, 3, 32, 32))
    opt.step()
    plain = MultiExpertNet("resnet32", 10, 3, 1, proj_dim=8, fuse_experts=False)
    plain.load_state_dict(fused.state_dict())  # strict: identical keys and shapes
    plain.eval(), fused.eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(fused(x)["logits"], plain(x)["logits"], rtol=1e-5, atol=1e-5)
    assert fused.state_dict().keys() == net.state_dict().keys()


def test_momentum_encoder_uses_the_fused_path(monkeypatch):
    net, fused = pair("resnet_small", 1, 0)
    enc, enc_fused = MomentumEncoder(net), MomentumEncoder(fused)
    assert enc_fused.fuse_experts is True
    import ecl_lightning.models.experts as experts

    calls = []
    original = experts.fused_branch_features
    monkeypatch.setattr(experts, "fused_branch_features", lambda *a: calls.append(1) or original(*a))
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(enc_fused(x), enc(x), rtol=1e-5, atol=1e-6)  # train mode: batch statistics
    assert calls == [1]
    assert_same_state(enc, enc_fused, rtol=1e-5, atol=1e-6)


def tiny_torchvision(block: type, groups: int = 1) -> Callable[..., Trunk]:
    """A torchvision ResNet with one block per stage (the real ones are too slow for float64 tests)."""

    def build(in_chans: int = 3) -> Trunk:
        net = tv.ResNet(block, [1, 1, 1, 1], groups=groups, width_per_group=4 if groups > 1 else 64)
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        return Trunk(stem, [net.layer1, net.layer2, net.layer3, net.layer4], out_dim=net.fc.in_features)

    return build


def test_sync_batchnorm_converted_after_construction():
    """trainer.sync_batchnorm=true swaps in SyncBatchNorm after the net is built; without a process group (here) it
    normalises with local statistics, and the fused rule must do the same (the cross-process path needs GPUs)."""
    net, fused = (nn.SyncBatchNorm.convert_sync_batchnorm(m).double() for m in pair("resnet_small", 1, 0))
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    ref, out = step(net, x), step(fused, x)
    torch.testing.assert_close(out["logits"], ref["logits"], **F64)
    assert_same_state(net, fused, **F64)


@pytest.mark.parametrize(("block", "groups"), [(tv.BasicBlock, 1), (tv.Bottleneck, 4)])
def test_torchvision_blocks(block, groups, monkeypatch):
    """torchvision stem (max-pool), BasicBlock / Bottleneck with grouped 3x3 convolutions, conv+BN downsample."""
    monkeypatch.setitem(BACKBONES, "tiny_tv", tiny_torchvision(block, groups))
    net, fused = (m.double() for m in pair("tiny_tv", 3, 0, k=2))
    x = torch.randn(4, 3, 64, 64, dtype=torch.float64)  # layer4 at 2x2: 16 values per BN channel
    ref, out = step(net, x), step(fused, x)
    torch.testing.assert_close(out["logits"], ref["logits"], **F64)
    for (name, p), q in zip(net.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, **F64, msg=lambda m, name=name: f"grad of {name}: {m}")
    assert_same_state(net, fused, **F64)


@pytest.mark.parametrize("backbone", ["resnet50", "resnext50_32x4d", "resnet152"])
def test_torchvision_backbones_are_fusable(backbone):
    stages = [nn.Sequential(*build_trunk(backbone).stages) for _ in range(2)]
    assert unfusable_reason(stages) is None


def test_auto_and_choices(monkeypatch):
    cpu = torch.zeros(1)
    assert not use_fused("auto", cpu, 3) and use_fused(True, cpu, 3) and not use_fused(False, cpu, 3)
    with pytest.raises(ConfigError, match="model.net.fuse_experts"):
        NetConfig(fuse_experts="yes")
    with pytest.raises(ConfigError, match="model.net.fuse_experts"):
        MultiExpertNet("resnet_small", 10, 2, in_chans=1, fuse_experts="always")

    def odd(in_chans: int = 1) -> Trunk:  # a trunk with a layer that has no fused rule
        stage = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.GELU())
        return Trunk(nn.Conv2d(in_chans, 8, 3, padding=1), [stage, copy.deepcopy(stage)], out_dim=8)

    monkeypatch.setitem(BACKBONES, "odd", odd)
    with pytest.raises(ConfigError, match=r"fuse_experts=true is not supported for backbone 'odd': no fused rule for"):
        MultiExpertNet("odd", 10, 2, in_chans=1, fuse_experts=True)
    assert MultiExpertNet("odd", 10, 2, in_chans=1, fuse_experts="auto").fuse_experts is False  # falls back
    assert unfusable_reason(MultiExpertNet("resnet32", 10, 2).branches) is None


def test_fused_training_end_to_end(data_dirs, tmp_path):  # noqa: F811 - fixture
    cfg = compose_cfg(
        ["experiment=fmnist_lt", "debug=fdr", "model.net.fuse_experts=true", "model.net.shared_stages=1"]
        + tiny_overrides("fmnist_lt", data_dirs),
        tmp_path,
    )
    assert 0.0 <= train(cfg)["test/acc"] <= 1.0


def test_compile_keeps_plain_state_dict_keys():
    plain = ECLModule(10, net={"num_experts": 2}, in_chans=1)
    compiled = ECLModule(10, net={"num_experts": 2}, in_chans=1, compile=True)
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    assert not any("_orig_mod" in k for k in compiled.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("fuse", [False, True])
def test_compiled_forward_matches_in_train_and_eval(fuse):
    """model.compile=true: the compiled network gives the eager numbers and BN updates, trains and evaluates."""
    kw = {"net": {"num_experts": 2, "fuse_experts": fuse}, "in_chans": 1}
    compiled = ECLModule(10, compile=True, **kw)
    eager = ECLModule(10, **kw)
    eager.load_state_dict(compiled.state_dict())
    x = torch.randn(4, 1, 28, 28)
    for train_mode in (True, False):
        compiled.train(train_mode), eager.train(train_mode)
        ref, out = eager.net(x), compiled.net(x)
        torch.testing.assert_close(out["logits"], ref["logits"], rtol=1e-4, atol=1e-5)
        if train_mode:
            out["logits"].sum().backward()
            used = [*compiled.net.branches.parameters(), *compiled.net.heads.parameters()]
            assert all(p.grad is not None for p in used)
            assert_same_state(eager.net, compiled.net, rtol=1e-4, atol=1e-5)  # running stats written back
            keys = compiled.momentum_encoder(x)
            torch.testing.assert_close(keys, eager.momentum_encoder(x), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        assert compiled(x).shape == (4, 10)
