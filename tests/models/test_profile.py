"""Model size report: parameter counts against torchvision, multiply-adds against the published ResNet-32 figure."""

import pytest
import torch
import torchvision

from ecl_lightning.models import MultiExpertNet, build_trunk
from ecl_lightning.models.profile import count_flops, count_params, model_size


def test_resnet50_expert_has_torchvision_resnet50_parameters():
    net = MultiExpertNet("resnet50", num_classes=1000, num_experts=2, head="linear")
    size = model_size(net, (3, 64, 64))
    assert size.params_expert == [25_557_032, 25_557_032]
    assert size.params_expert[0] == count_params(torchvision.models.resnet50())
    assert size.params_shared == 0 and size.flops_shared == 0
    # dist head (2048 x 1000 + 1000) + projector (2048 x 2048 + 2048, 2048 x 128 + 128)
    assert size.params_train_heads == [2_049_000 + 4_196_352 + 262_272] * 2
    assert size.params_total == sum(size.params_expert) + sum(size.params_train_heads)


def test_resnet32_costs_69m_multiply_adds_on_32px():
    # ResNet-32 (CIFAR): 0.069 G multiply-adds, usually quoted as "0.07 GFLOPs"; FlopCounterMode counts 2 per MAC.
    net = MultiExpertNet("resnet32", num_classes=10, num_experts=3, head="linear")
    size = model_size(net, (3, 32, 32))
    trunk_flops = count_flops(lambda: build_trunk("resnet32")(torch.zeros(1, 3, 32, 32)))
    assert trunk_flops == 2 * 68_861_952
    assert size.flops_expert == [trunk_flops + 2 * 64 * 10] * 3  # + the 64 -> 10 label head
    assert size.flops_inference == 3 * size.flops_expert[0]
    assert size.params_expert[0] == pytest.approx(0.464e6, rel=0.01)  # ResNet-32's published 0.46 M
    assert "0.069 GMACs" in size.summary() and "0.207 GMACs" in size.summary()


def test_shared_stages_split_the_cost_and_nothing_changes_in_the_net():
    full = model_size(MultiExpertNet("resnet32", 10, num_experts=2), (3, 32, 32))
    net = MultiExpertNet("resnet32", 10, num_experts=2, shared_stages=2)
    net.train()
    stats = {k: v.clone() for k, v in net.state_dict().items()}
    size = model_size(net, (3, 32, 32))
    assert 0 < size.flops_shared < full.flops_expert[0]
    assert size.flops_shared + size.flops_expert[0] == full.flops_expert[0]  # the same network per prediction
    assert size.flops_inference < full.flops_inference
    assert size.params_shared + size.params_expert[0] == full.params_expert[0]
    assert all(m.training for m in net.modules())  # train mode restored
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in stats.items())  # no BN statistic moved
