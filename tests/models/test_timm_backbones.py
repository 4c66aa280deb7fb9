"""timm models as backbones (`model.net.backbone=timm:<name>`): training runs, the shared-trunk cut, local weights,
and the errors that stop a run before any data is read. Tiny architectures through timm's own keyword arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ecl_lightning.config import ConfigError
from ecl_lightning.models import MultiExpertNet, build_trunk
from ecl_lightning.train import build, train
from helpers import compose_cfg, run_cli, tiny_overrides

timm = pytest.importorskip("timm", reason="pip install 'ecl_lightning[timm]'")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# name, timm keyword arguments (tiny but the same families), shared_stages to run with, stages of the cut
VIT = ("vit_small_patch16_224", {"depth": 4, "embed_dim": 32, "num_heads": 2, "patch_size": 4})
CONVNEXT = ("convnext_tiny", {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64], "patch_size": 1})
RESNET = ("resnet18", {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8})
FAMILIES = {"vit": (*VIT, 2), "convnext": (*CONVNEXT, 2), "resnet": (*RESNET, 3)}


def kwargs_override(kwargs: dict) -> str:
    """{'depth': 2, 'dims': [8, 16]} -> ++model.net.backbone_kwargs={depth:2,dims:[8,16]} (a Hydra override)."""
    items = ",".join(f"{k}:{str(v).replace(' ', '')}" for k, v in kwargs.items())
    return f"++model.net.backbone_kwargs={{{items}}}"


def timm_overrides(name: str, kwargs: dict, shared_stages: int = 0) -> list[str]:
    return [f"model.net.backbone=timm:{name}", kwargs_override(kwargs), f"model.net.shared_stages={shared_stages}"]


def params(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- training runs


@pytest.mark.parametrize("family", list(FAMILIES))
def test_timm_backbone_trains_with_shared_trunk(family, data_dirs, tmp_path):
    """debug=fdr on the default experiment (Fashion-MNIST-LT, 1 x 28 x 28) with the first stages shared."""
    name, kwargs, shared = FAMILIES[family]
    overrides = ["debug=fdr", *tiny_overrides("fmnist_lt", data_dirs), "data.batch_size=2"]
    cfg = compose_cfg(overrides + timm_overrides(name, kwargs, shared) + ["model.loss.queue_size=4"], tmp_path)
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["test/count"] == 32
    assert {f"test/expert{k}/acc" for k in (1, 2, 3)} <= metrics.keys()
    assert f"backbone: timm:{name}" in (tmp_path / "config.yaml").read_text()


def test_timm_vit_trains_on_cifar_at_its_size(data_dirs, tmp_path):
    """On CIFAR-10-LT (3 x 32 x 32) the ViT is built for 32 px and 3 channels; fast_dev_run trains and tests."""
    name, kwargs = VIT
    overrides = ["experiment=cifar10_lt", "debug=fdr", *tiny_overrides("cifar10_lt", data_dirs)]
    cfg = compose_cfg(overrides + timm_overrides(name, kwargs, 1), tmp_path)
    _, model, _ = build(cfg)
    vit = model.net.shared[0].vit
    assert vit.patch_embed.img_size == (32, 32) and vit.patch_embed.proj.in_channels == 3
    assert vit.pos_embed.shape[1] == 1 + (32 // 4) ** 2  # class token + an 8 x 8 grid of patches
    metrics = train(compose_cfg(overrides + timm_overrides(name, kwargs, 1), tmp_path / "run"))
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_deit_lt_variant_composes_and_runs_shrunk(data_dirs, tmp_path):
    """variant=vit_deit_lt: DeiT-LT's released numbers; a fast_dev_run with the ViT shrunk (same cut, same recipe)."""
    overrides = ["experiment=cifar100_lt", "variant=vit_deit_lt"]
    cfg = compose_cfg(overrides, tmp_path)
    net, optim = cfg.model.net, cfg.model.optim
    assert net.backbone == "timm:deit_base_patch16_224" and net.backbone_kwargs.patch_size == 4
    assert (net.shared_stages, net.backbone_kwargs.vit_stages, net.backbone_kwargs.drop_path_rate) == (3, 4, 0.1)
    assert (optim.name, optim.lr, optim.weight_decay, optim.base_batch_size) == ("adamw", 2.5e-4, 0.05, None)
    assert (cfg.model.schedule.name, cfg.model.schedule.warmup_epochs, cfg.model.schedule.min_lr) == ("cosine", 5, 1e-5)
    assert (cfg.trainer.max_epochs, cfg.trainer.accumulate_grad_batches, cfg.data.batch_size) == (1200, 4, 256)
    shrunk = ["++model.net.backbone_kwargs.depth=4", "++model.net.backbone_kwargs.embed_dim=32"]
    shrunk += ["++model.net.backbone_kwargs.num_heads=2", "debug=fdr", *tiny_overrides("cifar100_lt", data_dirs)]
    metrics = train(compose_cfg(overrides + shrunk, tmp_path / "run"))
    assert 0.0 <= metrics["test/acc"] <= 1.0


# ----------------------------------------------------------------------------- the shared-trunk cut


@pytest.mark.parametrize("family", list(FAMILIES))
def test_shared_trunk_is_one_module_and_expert_stages_are_distinct(family):
    name, kwargs, shared = FAMILIES[family]
    net = MultiExpertNet(f"timm:{name}", 10, 3, shared, in_chans=1, img_size=28, backbone_kwargs=kwargs)
    trunk = build_trunk(f"timm:{name}", in_chans=1, img_size=28, **kwargs)
    assert not hasattr(trunk, "unsplit_reason")
    shared_part = n_params(trunk.stem) + sum(n_params(s) for s in trunk.stages[:shared])
    # The shared part exists once; each expert holds only its later stages and its pool.
    assert n_params(net.shared) == shared_part
    for branch in net.branches:
        assert n_params(branch) == n_params(trunk) - shared_part
        assert not params(branch) & params(net.shared)
    b = net.branches
    assert not params(b[0]) & params(b[1]) and not params(b[1]) & params(b[2])

    # Behaviour: a change of a shared weight moves every expert, a change of expert 2's weights only expert 2.
    net.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        before = net.features(x)
        next(net.shared.parameters()).add_(0.5)
        after_shared = net.features(x)
        for p in net.branches[1].parameters():
            p.add_(0.5)
        after_expert = net.features(x)
    assert all(not torch.allclose(before[k], after_shared[k]) for k in range(3))
    torch.testing.assert_close(after_expert[[0, 2]], after_shared[[0, 2]])
    assert not torch.allclose(after_expert[1], after_shared[1])


def test_vit_blocks_are_cut_into_groups():
    name, kwargs = VIT
    default = build_trunk(f"timm:{name}", in_chans=3, img_size=32, **{**kwargs, "depth": 6})
    assert [len(s) for s in default.stages] == [2, 2, 1, 1]  # 4 groups, the first ones longer
    three = build_trunk(f"timm:{name}", in_chans=3, img_size=32, vit_stages=3, **{**kwargs, "depth": 6})
    assert [len(s) for s in three.stages] == [2, 2, 2]
    with pytest.raises(ConfigError, match="vit_stages=7"):
        build_trunk(f"timm:{name}", in_chans=3, img_size=32, vit_stages=7, **{**kwargs, "depth": 6})


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cut_trunk_computes_the_timm_model(family, tmp_path):
    """A timm model's weights loaded into the cut trunk give that model's own pooled features."""
    name, kwargs, _ = FAMILIES[family]
    extra = {"img_size": 32} if family == "vit" else {}
    reference = timm.create_model(name, num_classes=10, in_chans=3, **extra, **kwargs).eval()
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    trunk = build_trunk(f"timm:{name}", in_chans=3, img_size=32, pretrained_path=str(tmp_path / "w.pth"), **kwargs)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(trunk.eval()(x), reference.forward_head(reference.forward_features(x), True))


def test_model_of_no_known_structure_is_kept_whole():
    kwargs = {"depth": 1, "embed_dim": 32, "num_heads": 2, "patch_size": 8}  # two prefix tokens: pooled differently
    name = "timm:deit_tiny_distilled_patch16_224"
    net = MultiExpertNet(name, 10, 2, 0, in_chans=3, img_size=32, backbone_kwargs=kwargs)
    assert net.features(torch.randn(2, 3, 32, 32)).shape == (2, 2, 32)
    with pytest.raises(ConfigError, match=r"not split into stages .*model.net.shared_stages=0"):
        MultiExpertNet(name, 10, 2, 1, in_chans=3, img_size=32, backbone_kwargs=kwargs)


# ----------------------------------------------------------------------------- local weights


def test_pretrained_path_loads_weights(tmp_path):
    name, kwargs = VIT
    source = timm.create_model(name, num_classes=1000, img_size=32, **kwargs)  # with a classifier, dropped on load
    state = source.state_dict()
    torch.save({"model": state, "epoch": 3}, tmp_path / "deit_style.pth")  # a training checkpoint's `model` entry
    trunk = build_trunk(
        f"timm:{name}", in_chans=3, img_size=32, pretrained_path=str(tmp_path / "deit_style.pth"), **kwargs
    )
    vit = trunk.stem.vit
    assert torch.equal(vit.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    assert torch.equal(vit.cls_token, state["cls_token"]) and torch.equal(vit.pos_embed, state["pos_embed"])
    assert torch.equal(trunk.stages[3][0].mlp.fc2.weight, state["blocks.3.mlp.fc2.weight"])
    assert torch.equal(trunk.pool.norm.weight, state["norm.weight"])
    random = build_trunk(f"timm:{name}", in_chans=3, img_size=32, **kwargs)  # random init by default
    assert not torch.equal(random.stem.vit.patch_embed.proj.weight, state["patch_embed.proj.weight"])


def test_pretrained_rgb_safetensors_load_into_a_grey_model(tmp_path):
    """RGB weights into a 1-channel model (Fashion-MNIST): timm's adaptation sums the first conv over channels."""
    from safetensors.torch import save_file

    name, kwargs = RESNET
    state = timm.create_model(name, num_classes=1000, **kwargs).state_dict()
    save_file(state, tmp_path / "w.safetensors")
    trunk = build_trunk(
        f"timm:{name}", in_chans=1, img_size=28, pretrained_path=str(tmp_path / "w.safetensors"), **kwargs
    )
    torch.testing.assert_close(trunk.stem[0].weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(trunk.stages[3][0].conv2.weight, state["layer4.0.conv2.weight"])


def test_pretrained_path_that_does_not_fit_is_one_line(tmp_path):
    torch.save(timm.create_model(RESNET[0], **RESNET[1]).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ConfigError, match=r"does not fit timm:convnext_tiny .* missing keys") as err:
        build_trunk(
            f"timm:{CONVNEXT[0]}", in_chans=3, img_size=32, pretrained_path=str(tmp_path / "resnet.pth"), **CONVNEXT[1]
        )
    assert "\n" not in str(err.value) and "pretrained_path" in str(err.value)
    # The same architecture with other widths: shape mismatches
    wider = timm.create_model(RESNET[0], **{**RESNET[1], "channels": [16, 16, 32, 64]})
    torch.save(wider.state_dict(), tmp_path / "wider.pth")
    with pytest.raises(ConfigError, match=r"[1-9]\d* shape mismatches"):
        build_trunk(
            f"timm:{RESNET[0]}", in_chans=3, img_size=32, pretrained_path=str(tmp_path / "wider.pth"), **RESNET[1]
        )


# ----------------------------------------------------------------------------- errors before any data is read


def refused_before_data(overrides: list[str], tmp_path) -> str:
    """build() on a config whose data folder does not exist: a ConfigError (not the missing dataset) is raised."""
    cfg = compose_cfg([*overrides, f"data.data_dir={tmp_path / 'no_data'}"], tmp_path)
    with pytest.raises(ConfigError) as err:
        build(cfg)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_unknown_timm_name_is_refused_before_data(tmp_path):
    message = refused_before_data(["model.net.backbone=timm:vit_smal_patch16_224"], tmp_path)
    assert "no model 'vit_smal_patch16_224'" in message and "vit_small_patch16_224" in message
    assert "timm.list_models" in message


def test_fused_experts_are_refused_for_timm_before_any_model_is_built(tmp_path, monkeypatch):
    name, kwargs = VIT
    message = refused_before_data([*timm_overrides(name, kwargs), "model.net.fuse_experts=true"], tmp_path)
    assert "model.net.fuse_experts=true does not apply" in message and "fuse_experts=false" in message
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("a timm model was built"))
    with pytest.raises(ConfigError, match="model.net.fuse_experts"):
        MultiExpertNet(f"timm:{name}", 10, 3, in_chans=1, img_size=28, backbone_kwargs=kwargs, fuse_experts=True)


def test_fused_auto_runs_timm_experts_one_by_one():
    name, kwargs = VIT
    net = MultiExpertNet(f"timm:{name}", 10, 2, in_chans=1, img_size=28, backbone_kwargs=kwargs, fuse_experts="auto")
    assert net.fuse_experts is False


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ("{in_chans:3}", "backbone_kwargs.in_chans is set by the package"),
        ("{pretrained_path:/no/such/file.pth}", "pretrained_path=/no/such/file.pth: no such file"),
        ("{vit_stages:two}", "vit_stages='two' must be an integer"),
    ],
)
def test_backbone_kwargs_errors_before_data(kwargs, match, tmp_path):
    message = refused_before_data(
        [f"model.net.backbone=timm:{VIT[0]}", f"++model.net.backbone_kwargs={kwargs}"], tmp_path
    )
    assert match in message


def test_build_errors_are_one_line():
    with pytest.raises(ConfigError, match="backbone_kwargs for timm:resnet18: .*unexpected keyword argument") as err:
        build_trunk("timm:resnet18", in_chans=1, img_size=28, no_such_option=1)
    with pytest.raises(ConfigError, match=r"does not run on 1x28x28 images") as err:
        build_trunk("timm:convnext_atto", in_chans=1, img_size=28, depths=[1, 1, 1, 1], dims=[8, 16, 32, 64])
    assert "\n" not in str(err.value)


def test_cli_unknown_name_exits_2_with_one_line(tmp_path):
    result = run_cli(
        ["model.net.backbone=timm:not_a_model", f"paths.output_dir={tmp_path}", f"data.data_dir={tmp_path}"],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "timm" in errors[0] and "timm.list_models" in errors[0]
    assert "Traceback" not in result.stderr
