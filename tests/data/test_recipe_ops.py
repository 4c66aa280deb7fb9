"""The recipes' single declaration (data/transforms/recipes.py) and the op table that builds both paths from it
(data/transforms/ops.py): every op has both paths, every recipe builds on both, each batched op gets its dtype, one
Cutout, and no private names cross the transforms modules. The statistics of the two paths: test_gpu_aug.py
(Fashion-MNIST, CIFAR) and test_decode_bytes.py (split-file recipes)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch
from PIL import Image

import ecl_lightning.data.transforms as transforms_pkg
from ecl_lightning.data import Cutout, InputSpec
from ecl_lightning.data.transforms import gpu as G
from ecl_lightning.data.transforms import gpu_split_file as S
from ecl_lightning.data.transforms import ops as O
from ecl_lightning.data.transforms import recipes as R
from ecl_lightning.data.transforms.ops import OPS, cpu_views, gpu_views, op

SPEC = InputSpec(channels=3, image_size=24, resize_size=28, mean=R.CIFAR_MEAN, std=R.CIFAR_STD)
# name -> (declaration, CPU input is PIL, batched input is a list of decoded images, a (C, H, W) input size)
DECLARED = {
    "fmnist": (R.fmnist_recipe(), False, False, (1, 28, 28)),
    "cifar": (R.cifar_recipe(), False, False, (3, 32, 32)),
    "small": (R.small_recipe(SPEC, 2), True, True, (3, 30, 40)),
    "randaugment": (R.split_file_recipe("randaugment", 24, 28, R.INAT_MEAN, R.INAT_STD), True, True, (3, 30, 40)),
    "simclr": (R.split_file_recipe("simclr", 24, 28, R.IMAGENET_MEAN, R.IMAGENET_STD), True, True, (3, 40, 30)),
}


def test_every_op_has_a_cpu_and_a_batched_path():
    for name, paths in OPS.items():
        assert paths.cpu is not None and (paths.gpu or paths.gpu_list), name


def test_every_declared_op_is_in_the_table():
    with pytest.raises(KeyError, match="unknown augmentation op 'cutuot'"):
        op("cutuot", size=16)
    for recipe, *_ in DECLARED.values():
        assert {step.name for view in recipe for step in view} <= set(OPS)


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_both_paths_build_every_recipe_with_the_same_shapes(name):
    recipe, pil, image_list, shape = DECLARED[name]
    torch.manual_seed(0)
    images = [torch.randint(0, 256, shape, dtype=torch.uint8) for _ in range(4)]
    cpu_in = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images] if pil else images
    batched_in = images if image_list else torch.stack(images)
    for augment in (True, False):
        for cpu, batched in zip(cpu_views(recipe, augment, pil), gpu_views(recipe, augment, image_list), strict=True):
            per_image = torch.stack([cpu(x) for x in cpu_in])
            out = batched(batched_in)
            assert out.shape == per_image.shape and out.dtype == per_image.dtype == torch.float32, (name, augment)


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_each_batched_op_gets_the_dtype_it_needs(name):
    recipe, _, image_list, shape = DECLARED[name]
    seen = []

    def check(module, args):
        x = args[0]
        seen.append(type(module).__name__)
        if getattr(module, "input_dtype", None) is not None:
            assert x.dtype == module.input_dtype, (name, module)

    images = [torch.randint(0, 256, shape, dtype=torch.uint8) for _ in range(3)]
    for view in gpu_views(recipe, image_list=image_list):
        hooks = [m.register_forward_pre_hook(check) for m in view]
        view(images if image_list else torch.stack(images))
        for h in hooks:
            h.remove()
    assert len(seen) >= sum(len(v) for v in recipe)


def test_one_cutout_per_image_and_per_batch():
    classes = {
        obj
        for module in (transforms_pkg, R, O, G, S)
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__name__ == "Cutout"
    }
    assert classes == {Cutout} and Cutout is G.Cutout
    image = torch.rand(3, 32, 32)
    torch.manual_seed(4)
    alone = Cutout(16)(image)
    torch.manual_seed(4)
    assert torch.equal(Cutout(16)(image[None])[0], alone)  # an image is a batch of one, with the same draws
    assert (alone == 0).any() and torch.equal(alone[alone != 0], image[alone != 0])


def test_no_private_names_are_imported_across_the_transforms_modules():
    folder = Path(transforms_pkg.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ecl_lightning"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_split_file_recipe_names_the_choices():
    for build in (R.imagefolder_transforms, R.split_file_gpu_transforms):
        with pytest.raises(ValueError, match="recipe must be 'randaugment' or 'simclr', got 'autoaugment'"):
            build("autoaugment", 24, 28, R.IMAGENET_MEAN, R.IMAGENET_STD)
