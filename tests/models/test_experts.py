import pytest
import torch
from torch import nn

from ecl_lightning.models import CosineHead, MultiExpertNet, build_trunk


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


CASES = [("resnet_small", 1, 28), ("resnet32", 3, 32)]


@pytest.mark.parametrize(("backbone", "in_chans", "size"), CASES)
@pytest.mark.parametrize("num_experts", [1, 3])
@pytest.mark.parametrize("shared_stages", [0, 1, 2])
def test_shapes(backbone, in_chans, size, num_experts, shared_stages):
    net = MultiExpertNet(backbone, 10, num_experts, shared_stages, in_chans=in_chans, proj_dim=16)
    x = torch.randn(2, in_chans, size, size)
    feats = net.features(x)
    assert feats.shape == (num_experts, 2, 64) and net.feat_dim == 64
    logits, dist_logits = net.classify(feats)
    assert logits.shape == dist_logits.shape == (num_experts, 2, 10)
    z = net.project(feats)
    assert z.shape == (num_experts, 2, 16)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(num_experts, 2))
    out = net(x)
    assert set(out) == {"feats", "logits", "dist_logits"}
    assert out["logits"].shape == (num_experts, 2, 10)


def test_experts_differ_and_heads_are_per_expert():
    net = MultiExpertNet("resnet_small", 10, 3, in_chans=1)
    feats = net.features(torch.randn(2, 1, 28, 28))
    assert not torch.allclose(feats[0], feats[1])
    logits, _ = net.classify(torch.stack([feats[0]] * 3))
    assert not torch.allclose(logits[0], logits[1])  # same features, different heads


def test_shared_stages_out_of_range():
    with pytest.raises(ValueError, match="shared_stages"):
        MultiExpertNet("resnet_small", 10, 3, shared_stages=3, in_chans=1)
    with pytest.raises(ValueError, match="shared_stages"):
        MultiExpertNet("resnet_small", 10, 3, shared_stages=-1, in_chans=1)


def test_no_dist_head():
    net = MultiExpertNet("resnet_small", 10, 2, in_chans=1, dist_head=False)
    out = net(torch.randn(2, 1, 28, 28))
    assert out["dist_logits"] is None
    assert net.classify(out["feats"])[1] is None


@pytest.mark.parametrize("shared_stages", [1, 2])
def test_shared_stages_really_share(shared_stages):
    K = 3
    trunk = build_trunk("resnet32")
    shared_part = n_params(trunk.stem) + sum(n_params(s) for s in trunk.stages[:shared_stages])
    separate = MultiExpertNet("resnet32", 10, K, shared_stages=0)
    shared = MultiExpertNet("resnet32", 10, K, shared_stages=shared_stages)
    assert n_params(separate) - n_params(shared) == (K - 1) * shared_part
    assert n_params(shared.shared) == shared_part


def test_projector_and_cosine_head_options():
    net = MultiExpertNet("resnet_small", 5, 2, in_chans=1, head="cosine", head_scale=32.0, proj_hidden=32)
    assert isinstance(net.heads[0], CosineHead) and isinstance(net.dist_heads[1], CosineHead)
    assert net.heads[0].scale == 32.0
    assert net.projectors[0][0].out_features == 32 and net.projectors[0][2].out_features == 128


def test_channels_last_bf16_and_backward():
    net = MultiExpertNet("resnet_small", 10, 2, shared_stages=1, in_chans=1)
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
        loss = out["logits"].float().sum() + out["dist_logits"].float().sum() + net.project(out["feats"]).sum()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
