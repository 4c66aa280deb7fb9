import pytest
import torch

from ecl_lightning.models import KeyQueue, MomentumEncoder, MultiExpertNet, concat_all_gather


def small_net(**kw) -> MultiExpertNet:
    return MultiExpertNet("resnet_small", 10, 2, in_chans=1, proj_dim=8, **kw)


def ema_pairs(enc, net):
    for part in ("shared", "branches", "projectors"):
        sd_e, sd_n = getattr(enc, part).state_dict(), getattr(net, part).state_dict()
        assert sd_e.keys() == sd_n.keys()
        for k in sd_e:
            yield k, sd_e[k], sd_n[k]


def perturb(net):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(3.0)


@pytest.mark.parametrize("shared_stages", [0, 1])
def test_update_m0_copies_online(shared_stages):
    net = small_net(shared_stages=shared_stages)
    enc = MomentumEncoder(net, momentum=0.0)
    perturb(net)
    enc.update(net)
    for _, e, n in ema_pairs(enc, net):
        assert torch.equal(e, n)


def test_update_moves_one_permille():
    net = small_net()
    enc = MomentumEncoder(net, momentum=0.999)
    before = {k: e.clone() for k, e, _ in ema_pairs(enc, net)}
    perturb(net)
    enc.update(net)
    params = {n for part in ("shared", "branches", "projectors") for n, _ in getattr(net, part).named_parameters()}
    for k, e, n in ema_pairs(enc, net):
        if k in params:  # parameters moved 0.1% of the way (the online net moved by +1)
            torch.testing.assert_close(e, before[k] + 0.001, rtol=0, atol=1e-6)
        else:  # buffers copied
            assert torch.equal(e, n)


def test_not_trainable_and_in_state_dict():
    net = small_net()
    holder = torch.nn.Module()
    holder.net, holder.ema = net, MomentumEncoder(net)
    assert all(not p.requires_grad for p in holder.ema.parameters())
    trainable = {id(p) for p in holder.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in net.parameters()}
    keys = holder.state_dict().keys()
    assert any(k.startswith("ema.branches.") for k in keys)
    assert any(k.startswith("ema.projectors.") for k in keys)
    assert not any(k.startswith("ema.heads") for k in keys)  # label heads are not part of the key encoder


def test_keys_normalised_and_match_online_at_init():
    net = small_net(shared_stages=1).eval()
    enc = MomentumEncoder(net).eval()
    x = torch.randn(3, 1, 28, 28)
    keys = enc(x)
    assert keys.shape == (2, 3, 8) and not keys.requires_grad
    torch.testing.assert_close(keys.norm(dim=-1), torch.ones(2, 3))
    torch.testing.assert_close(keys, net.project(net.features(x)))


def test_queue_wraps_around():
    q = KeyQueue(num_experts=2, dim=3, size=4)
    torch.testing.assert_close(q.keys.norm(dim=-1), torch.ones(2, 4))
    assert q.keys.shape == (2, 4, 3) and (q.labels == -1).all() and q.ptr.item() == 0
    k1, k2, k3 = (torch.full((2, 2, 3), float(i)) for i in (1, 2, 3))
    q.enqueue(k1, torch.tensor([10, 11]))
    assert q.ptr.item() == 2 and q.labels.tolist() == [10, 11, -1, -1]
    q.enqueue(k2, torch.tensor([12, 13]))
    assert q.ptr.item() == 0
    q.enqueue(k3, torch.tensor([14, 15]))  # overwrites the oldest
    assert q.ptr.item() == 2 and q.labels.tolist() == [14, 15, 12, 13]
    assert q.keys[:, :2].eq(3.0).all() and q.keys[:, 2:].eq(2.0).all()


def test_queue_per_expert_keys():
    q = KeyQueue(num_experts=2, dim=1, size=2)
    q.enqueue(torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]]), torch.tensor([0, 1]))
    assert q.keys.squeeze(-1).tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_queue_rejects_non_dividing_batch():
    q = KeyQueue(num_experts=1, dim=3, size=10)
    with pytest.raises(ValueError, match="multiple of the global batch"):
        q.enqueue(torch.zeros(1, 4, 3), torch.zeros(4, dtype=torch.long))


def test_queue_buffers_checkpointed():
    q = KeyQueue(num_experts=2, dim=3, size=4)
    q.enqueue(torch.ones(2, 2, 3), torch.tensor([1, 2]))
    assert set(q.state_dict()) == {"keys", "labels", "ptr"}
    q2 = KeyQueue(num_experts=2, dim=3, size=4)
    q2.load_state_dict(q.state_dict())
    assert q2.ptr.item() == 2 and torch.equal(q2.keys, q.keys) and torch.equal(q2.labels, q.labels)


def test_concat_all_gather_identity_without_dist():
    t = torch.randn(2, 5, 3)
    assert concat_all_gather(t) is t
    assert concat_all_gather(t, dim=1) is t


def test_momentum_encoder_bf16_channels_last():
    net = small_net(shared_stages=1)
    enc = MomentumEncoder(net).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 28, 28).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        keys = enc(x)
    q = KeyQueue(2, 8, 4)
    q.enqueue(keys, torch.tensor([0, 1]))
    assert q.keys.dtype == torch.float32 and keys.shape == (2, 2, 8)


def test_ncl_style_encoder_averages_the_trunks_only_and_keeps_its_own_statistics():
    """NCL (lib/core/function.py): EMA of backbone + GAP only, so the key projector keeps its initial weights; the
    key encoder's batch-norm statistics are its own; it starts from its own random initialisation."""
    net = small_net()
    torch.manual_seed(1)
    fresh = small_net()
    enc = MomentumEncoder(net, momentum=0.0, scope="backbone", copy_buffers=False, init_from=fresh)
    start = {k: e.clone() for k, e, _ in ema_pairs(enc, fresh)}
    assert any(not torch.equal(e, n) for _, e, n in ema_pairs(enc, net))  # not a copy of the online net
    perturb(net)
    enc.update(net)
    trunk_params = {f"{part}.{n}" for part in ("shared", "branches") for n, _ in getattr(net, part).named_parameters()}
    for part in ("shared", "branches", "projectors"):
        for k, e in getattr(enc, part).state_dict().items():
            online = getattr(net, part).state_dict()[k]
            if f"{part}.{k}" in trunk_params:
                assert torch.equal(e, online), k  # momentum 0: moved all the way
            else:  # projector weights and every buffer stay where they started
                assert torch.equal(e, start[k]), k


def test_bad_scope_and_a_net_without_projectors_are_refused():
    with pytest.raises(ValueError, match="scope"):
        MomentumEncoder(small_net(), scope="heads")
    with pytest.raises(ValueError, match="projectors"):
        MomentumEncoder(small_net(projector=False))
