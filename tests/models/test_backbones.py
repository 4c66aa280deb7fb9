import pytest
import torch
import torchvision
from torch import nn

from ecl_lightning.config import ConfigError
from ecl_lightning.models import BACKBONES, Trunk, build_trunk


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_resnet32_param_count_matches_paper():
    trunk = build_trunk("resnet32")
    # He et al. (2016) Table 6: ResNet-32 has 0.46M parameters (with a 10-class fc: 463,504 + 650 = 464,154).
    assert n_params(trunk) == 463_504
    assert len(trunk.stages) == 3 and trunk.out_dim == 64
    assert [len(s) for s in trunk.stages] == [5, 5, 5]
    assert n_params(build_trunk("resnet32", width=2)) > 3 * n_params(trunk)


def test_resnet32_option_a_shortcut_has_no_params():
    trunk = build_trunk("resnet32")
    first_down = trunk.stages[1][0]
    assert n_params(first_down.shortcut) == 0
    x = torch.randn(2, 16, 8, 8)
    out = first_down.shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and out[:, :8].abs().sum() == 0


@pytest.mark.parametrize(
    ("name", "in_chans", "size", "out_dim"), [("resnet32", 3, 32, 64), ("resnet_small", 1, 28, 64)]
)
def test_small_trunk_shapes_channels_last_and_bf16(name, in_chans, size, out_dim):
    trunk = build_trunk(name, in_chans=in_chans)
    x = torch.randn(2, in_chans, size, size)
    ref = trunk(x)
    assert ref.shape == (2, out_dim)
    cl = trunk.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert trunk(x).shape == (2, out_dim)


def test_resnet_small_kwargs():
    trunk = build_trunk("resnet_small", in_chans=1, widths=(8, 16), blocks=(2, 1), strides=(1, 2))
    assert len(trunk.stages) == 2 and trunk.out_dim == 16
    assert trunk(torch.randn(1, 1, 28, 28)).shape == (1, 16)


def test_unknown_backbone_lists_registry():
    with pytest.raises(ValueError, match="resnet32") as e:
        build_trunk("vit_huge")
    assert "vit_huge" in str(e.value)
    assert set(BACKBONES) == {"resnet32", "resnet_small", "resnet50", "resnext50_32x4d", "resnet152"}


@pytest.mark.parametrize("arch", ["resnet50", "resnext50_32x4d"])
def test_torchvision_trunk_param_count_equals_torchvision(arch):
    trunk = build_trunk(arch)
    assert isinstance(trunk, Trunk) and len(trunk.stages) == 4 and trunk.out_dim == 2048
    reference = getattr(torchvision.models, arch)(weights=None)
    assert n_params(trunk) + n_params(nn.Linear(2048, 1000)) == n_params(reference)


def test_torchvision_trunk_tiny_forward():
    trunk = build_trunk("resnet50").eval()
    assert trunk(torch.randn(1, 3, 32, 32)).shape == (1, 2048)


def test_pretrained_path_loads_state_dict(tmp_path):
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "r50.pth"
    torch.save(reference.state_dict(), path)
    trunk = build_trunk("resnet50", pretrained_path=str(path))
    torch.testing.assert_close(trunk.stem[0].weight, reference.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(trunk.stages[3][2].bn3.running_var, reference.layer4[2].bn3.running_var)
    torch.testing.assert_close(trunk.stages[2][1].conv2.weight, reference.layer3[1].conv2.weight, rtol=0, atol=0)


def test_pretrained_path_wrong_arch_errors(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(
        ConfigError, match=r"pretrained_path=.*r50.pth is not a torchvision state_dict of resnext50_32x4d"
    ):
        build_trunk("resnext50_32x4d", pretrained_path=str(path))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="r50.pth cannot be read as a state_dict"):
        build_trunk("resnet50", pretrained_path=str(path))


def test_pretrained_path_missing_file_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(ConfigError, match="pretrained_path=.*nope.pth: no such file"):
        build_trunk("resnet50", pretrained_path=str(missing))


def test_resnet32_widths_is_ride_and_sade_reduce_dimension():
    """RIDE/SADE's ResNet32Model with reduce_dimension: stage widths 16, 24, 48 (not 16, 32, 64)."""
    trunk = build_trunk("resnet32", widths=[16, 24, 48])
    assert trunk.out_dim == 48 and [s[0].conv1.out_channels for s in trunk.stages] == [16, 24, 48]
    assert trunk(torch.randn(2, 3, 32, 32)).shape == (2, 48)
    assert n_params(trunk) < n_params(build_trunk("resnet32"))
    with pytest.raises(ValueError, match="3 entries"):
        build_trunk("resnet32", widths=[16, 24])


def test_resnext50_stage_planes_rebuilds_only_the_stages_that_differ():
    """RIDE/SADE's ResNeXt50Model with reduce_dimension: layer3/4 planes 192/384 (feature 1536); layer1-2 as
    torchvision's, so a shared early trunk keeps torchvision's weights layout."""
    ref = torchvision.models.resnext50_32x4d(weights=None)
    trunk = build_trunk("resnext50_32x4d", stage_planes=[64, 128, 192, 384])
    assert trunk.out_dim == 1536
    for i in (0, 1):
        assert [p.shape for p in trunk.stages[i].parameters()] == [
            p.shape for p in getattr(ref, f"layer{i + 1}").parameters()
        ]
    assert trunk.stages[2][0].conv3.out_channels == 768 and trunk.stages[3][0].conv3.out_channels == 1536
    assert trunk.stages[3][0].conv2.groups == 32
    assert trunk(torch.randn(1, 3, 64, 64)).shape == (1, 1536)
    with pytest.raises(ValueError, match="pretrained_path cannot load"):
        build_trunk("resnext50_32x4d", stage_planes=[64, 128, 192, 384], pretrained_path="weights.pth")
