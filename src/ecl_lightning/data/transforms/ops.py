"""The op table: every op of the augmentation recipes by name, with its torchvision v2 transform (the CPU path, per
image) and its batched op (the device path, gpu.py / gpu_split_file.py); and the builders of both paths from a
recipe's declaration (recipes.py). A recipe names each op once, so the two paths cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torchvision.transforms import v2

from ecl_lightning.data.transforms import gpu as G
from ecl_lightning.data.transforms import gpu_split_file as S


@dataclass(frozen=True)
class Op:
    """One step of a recipe: a name of OPS and its parameters, as (name, value) pairs (hashable, so equal views of
    a recipe are built once and shared)."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()


def op(name: str, **params: Any) -> Op:
    """Op(name, params) for a name of OPS."""
    if name not in OPS:
        raise KeyError(f"unknown augmentation op {name!r}; the ops are {sorted(OPS)}")
    return Op(name, tuple(params.items()))


class Recipe(NamedTuple):
    """The ops of the two training views and of the eval transform of one recipe."""

    view1: tuple[Op, ...]
    view2: tuple[Op, ...]
    evaluate: tuple[Op, ...]


@dataclass(frozen=True)
class OpPaths:
    """One op on both paths. `cpu`: its torchvision v2 transforms on a uint8 (C, H, W) tensor (`cpu_pil` where a
    PIL image needs others); `gpu`: its op on a (B, C, H, W) batch (`gpu_list` in the pipelines that start from a
    list of decoded images of different sizes: the crops that take the list and make the batch, and ops with a
    variant that is cheaper at their image size)."""

    cpu: Callable[..., list[nn.Module]]
    gpu: Callable[..., nn.Module] | None
    cpu_pil: Callable[..., list[nn.Module]] | None = None
    gpu_list: Callable[..., nn.Module] | None = None


def _applied(transform: nn.Module, p: float) -> list[nn.Module]:
    """The transform with probability p (v2.RandomApply, which draws even at p 1, only where p < 1)."""
    return [transform] if p == 1 else [v2.RandomApply([transform], p=p)]


def _normalize_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> list[nn.Module]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def _normalize_pil(mean: tuple[float, ...], std: tuple[float, ...]) -> list[nn.Module]:
    return [v2.ToImage(), *_normalize_tensor(mean, std), v2.ToPureTensor()]  # a plain tensor out


OPS: dict[str, OpPaths] = {
    # The eval geometry: the shorter side resized to `resize_size`, then a centre crop of `size`.
    "resize_crop": OpPaths(
        cpu=lambda size, resize_size: [v2.Resize(resize_size, antialias=True), v2.CenterCrop(size)],
        gpu=None,
        gpu_list=S.ResizeCenterCropEach,
    ),
    "random_crop": OpPaths(cpu=lambda size, padding: [v2.RandomCrop(size, padding=padding)], gpu=G.RandomCrop),
    "flip": OpPaths(cpu=lambda: [v2.RandomHorizontalFlip()], gpu=G.RandomHorizontalFlip),
    "resized_crop": OpPaths(
        cpu=lambda size, scale: [v2.RandomResizedCrop(size, scale=scale, antialias=True)],
        gpu=G.RandomResizedCrop,
        gpu_list=S.RandomResizedCropEach,
    ),
    "jitter": OpPaths(
        cpu=lambda brightness, contrast, saturation, hue, p: _applied(
            v2.ColorJitter(brightness, contrast, saturation, hue), p
        ),
        gpu=G.ColorJitter,
        gpu_list=S.GroupedColorJitter,
    ),
    "grayscale": OpPaths(cpu=lambda p: [v2.RandomGrayscale(p=p)], gpu=G.RandomGrayscale),
    "blur": OpPaths(
        cpu=lambda kernel_size, sigma, p: _applied(v2.GaussianBlur(kernel_size, sigma=sigma), p), gpu=G.GaussianBlur
    ),
    "autoaugment": OpPaths(cpu=lambda policy: [v2.AutoAugment(policy)], gpu=G.AutoAugment),
    "randaugment": OpPaths(
        cpu=lambda num_ops, magnitude: [v2.RandAugment(num_ops=num_ops, magnitude=magnitude)], gpu=S.RandAugment
    ),
    "normalize": OpPaths(cpu=_normalize_tensor, gpu=G.Normalize, cpu_pil=_normalize_pil),
    "erasing": OpPaths(cpu=lambda value: [v2.RandomErasing(value=value)], gpu=G.RandomErasing),
    "cutout": OpPaths(cpu=lambda size: [G.Cutout(size)], gpu=G.Cutout),  # one op, per image or per batch
}


def cpu_pipeline(ops: tuple[Op, ...], pil: bool = False) -> v2.Compose:
    """The torchvision v2 transform of `ops` on one uint8 (C, H, W) tensor, or on one PIL image if `pil`."""
    transforms = []
    for step in ops:
        paths = OPS[step.name]
        build = paths.cpu_pil if pil and paths.cpu_pil else paths.cpu
        transforms += build(**dict(step.params))
    return v2.Compose(transforms)


def gpu_pipeline(ops: tuple[Op, ...], image_list: bool = False) -> nn.Sequential:
    """The batched op of `ops` on a uint8 (B, C, H, W) batch, or on a list of uint8 images if `image_list`; ToFloat
    and ToUint8 go in front of the ops whose `input_dtype` differs from the batch's."""
    modules: list[nn.Module] = []
    dtype = torch.uint8
    for step in ops:
        paths = OPS[step.name]
        build = paths.gpu_list if image_list and paths.gpu_list else paths.gpu
        if build is None:
            where = "lists of images" if image_list else "batches"
            raise ValueError(f"augmentation op {step.name!r} has no batched op on {where}")
        module = build(**dict(step.params))
        needs = getattr(module, "input_dtype", None)
        if needs is not None and needs != dtype:
            modules.append(G.ToFloat() if needs == torch.float32 else G.ToUint8())
            dtype = needs
        modules.append(module)
    return nn.Sequential(*modules)


def _views(recipe: Recipe, augment: bool, build: Callable[[tuple[Op, ...]], nn.Module]) -> tuple[nn.Module, ...]:
    """(view 1, view 2, eval), each built once per distinct op list (all three the eval one without `augment`)."""
    views = recipe if augment else (recipe.evaluate,) * 3
    built: dict[tuple[Op, ...], nn.Module] = {}
    for ops in views:
        if ops not in built:
            built[ops] = build(ops)
    return tuple(built[ops] for ops in views)


def cpu_views(recipe: Recipe, augment: bool = True, pil: bool = False) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) of the CPU path (per image: a uint8 tensor, or a PIL image if `pil`)."""
    return _views(recipe, augment, lambda ops: cpu_pipeline(ops, pil))


def gpu_views(recipe: Recipe, augment: bool = True, image_list: bool = False) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) of the batched path (a uint8 batch, or a list of uint8 images if `image_list`)."""
    return _views(recipe, augment, lambda ops: gpu_pipeline(ops, image_list))
