"""Every augmentation recipe, declared once as ops (docs/method.md 4): the normalisation statistics, the eval
transform, and the (view 1, view 2, eval) of each dataset family, built for the CPU path (torchvision v2, per image)
and for the batched device path (`data.gpu_augment`, `data.decode=bytes`) by ops.py from the same declaration.

Fashion-MNIST and CIFAR work on uint8 CHW tensors (no PIL round trip); the image-file recipes on decoded PIL images
on the CPU and on lists of decoded uint8 images on the device.
"""

from __future__ import annotations

from torch import nn
from torchvision.transforms import v2

from ecl_lightning.data.input_spec import InputSpec
from ecl_lightning.data.transforms.gpu import TwoViewAugment
from ecl_lightning.data.transforms.gpu_split_file import ImageListTransforms
from ecl_lightning.data.transforms.ops import Op, Recipe, cpu_pipeline, cpu_views, gpu_views, op

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)
# The CIFAR statistics used by LDAM, NCL and PaCo's code (not the exact per-channel std 0.247/0.243/0.261).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INAT_MEAN, INAT_STD = (0.466, 0.471, 0.380), (0.195, 0.194, 0.192)
SPLIT_FILE_RECIPES = ("randaugment", "simclr")


# ---- the declarations -----------------------------------------------------------------------------------------------
def normalize(mean: tuple[float, ...], std: tuple[float, ...]) -> Op:
    """Scale to [0, 1], then (x - mean) / std per channel."""
    return op("normalize", mean=tuple(mean), std=tuple(std))


def eval_ops(image_size: int, resize_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[Op, ...]:
    """The eval geometry (the shorter side resized to `resize_size`, a centre crop of `image_size`), normalised."""
    return op("resize_crop", size=image_size, resize_size=resize_size), normalize(mean, std)


def _crop_flip_views(
    size: int, padding: int, norm: Op, prepare: tuple[Op, ...] = ()
) -> tuple[tuple[Op, ...], tuple[Op, ...]]:
    """(view 1, view 2): `prepare`, random crop with zero padding + flip, `norm`; view 2 then adds random erasing."""
    view1 = (*prepare, op("random_crop", size=size, padding=padding), op("flip"), norm)
    return view1, (*view1, op("erasing", value=0.0))


def simclr_blur_kernel(size: int) -> int:
    """SimCLR's blur kernel: 10% of the side, odd (3 at 32 px, 23 at 224)."""
    return int(0.1 * size) // 2 * 2 + 1


def simclr_view(size: int, scale: tuple[float, float], norm: Op) -> tuple[Op, ...]:
    """SimCLR's view: random resized crop, flip, colour jitter (p 0.8), grey (p 0.2), Gaussian blur (p 0.5)."""
    return (
        op("resized_crop", size=size, scale=scale),
        op("flip"),
        op("jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8),
        op("grayscale", p=0.2),
        op("blur", kernel_size=simclr_blur_kernel(size), sigma=(0.1, 2.0), p=0.5),
        norm,
    )


def fmnist_recipe() -> Recipe:
    """1x28x28: crop pad 2 + flip; view 2 adds random erasing (value 0, after normalising)."""
    norm = normalize(FMNIST_MEAN, FMNIST_STD)
    return Recipe(*_crop_flip_views(28, 2, norm), (norm,))


def cifar_recipe() -> Recipe:
    """3x32x32: view 1 crop/flip/AutoAugment/Cutout, view 2 SimCLR (docs/method.md 4)."""
    norm = normalize(CIFAR_MEAN, CIFAR_STD)
    view1 = (
        op("random_crop", size=32, padding=4),
        op("flip"),
        op("autoaugment", policy=v2.AutoAugmentPolicy.CIFAR10),
        norm,
        op("cutout", size=16),  # after normalisation, as in the Cutout paper: the square becomes the mean colour
    )
    return Recipe(view1, simclr_view(32, (0.2, 1.0), norm), (norm,))


def small_recipe(spec: InputSpec, crop_padding: int) -> Recipe:
    """The image folders' `small` preset: resize + centre crop to the image size, then the Fashion-MNIST recipe
    (random crop with padding + flip; view 2 adds random erasing) at that size."""
    evaluate = eval_ops(spec.image_size, spec.resize_size, spec.mean, spec.std)
    prepare, norm = evaluate[:-1], evaluate[-1]
    return Recipe(*_crop_flip_views(spec.image_size, crop_padding, norm, prepare), evaluate)


def split_file_recipe(
    recipe: str, image_size: int, resize_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Recipe:
    """The split-file benchmarks' and the image folders' `imagenet` preset: recipe `randaugment`: view 1 RRC, flip,
    jitter, RandAugment n2 m10 (ImageNet-LT, iNat), view 2 SimCLR; `simclr`: both views SimCLR (Places-LT). Eval:
    resize, centre crop."""
    if recipe not in SPLIT_FILE_RECIPES:
        raise ValueError(f"recipe must be 'randaugment' or 'simclr', got {recipe!r}")
    evaluate = eval_ops(image_size, resize_size, mean, std)
    norm = evaluate[-1]
    simclr = simclr_view(image_size, (0.08, 1.0), norm)
    if recipe == "simclr":
        return Recipe(simclr, simclr, evaluate)
    # PaCo / NCL's ImageNet-LT view: jitter always on, without hue, then RandAugment.
    view1 = (
        op("resized_crop", size=image_size, scale=(0.08, 1.0)),
        op("flip"),
        op("jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0, p=1.0),
        op("randaugment", num_ops=2, magnitude=10),
        norm,
    )
    return Recipe(view1, simclr, evaluate)


# ---- the CPU path: per image ----------------------------------------------------------------------------------------
def eval_transform(spec: InputSpec) -> nn.Module:
    """PIL image (already in the spec's mode) -> normalised float tensor (channels, image_size, image_size): the test
    images' transform, and predict's and export's."""
    return cpu_pipeline(eval_ops(spec.image_size, spec.resize_size, spec.mean, spec.std), pil=True)


def fmnist_transforms(augment: bool = True) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) for 1x28x28 uint8 images: crop pad 2 + flip; view 2 adds random erasing."""
    return cpu_views(fmnist_recipe(), augment)


def small_transforms(spec: InputSpec, crop_padding: int, augment: bool = True) -> tuple[nn.Module, ...]:
    """(view 1, view 2, eval) of the image folders' `small` preset on PIL images (small_recipe)."""
    return cpu_views(small_recipe(spec, crop_padding), augment, pil=True)


def cifar_transforms(augment: bool = True) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) for 3x32x32 uint8: view 1 AutoAugment + Cutout, view 2 SimCLR (docs/method.md 4)."""
    return cpu_views(cifar_recipe(), augment)


def imagefolder_transforms(
    recipe: str,
    image_size: int = 224,
    resize_size: int = 256,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    augment: bool = True,
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(view 1, view 2, eval) on PIL images of the split-file benchmarks and the image folders' `imagenet` preset
    (split_file_recipe: `randaugment` or `simclr`)."""
    return cpu_views(split_file_recipe(recipe, image_size, resize_size, mean, std), augment, pil=True)


# ---- the batched path: per batch, on the training device ------------------------------------------------------------
def fmnist_gpu_transforms(augment: bool = True) -> TwoViewAugment:
    """Batched fmnist_transforms (data.gpu_augment): both views of a uint8 (B, 1, 28, 28) batch."""
    return TwoViewAugment(*gpu_views(fmnist_recipe(), augment)[:2])


def cifar_gpu_transforms(augment: bool = True) -> TwoViewAugment:
    """Batched cifar_transforms (data.gpu_augment): both views of a uint8 (B, 3, 32, 32) batch."""
    return TwoViewAugment(*gpu_views(cifar_recipe(), augment)[:2])


def split_file_gpu_transforms(
    recipe: str,
    image_size: int,
    resize_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool = True,
) -> ImageListTransforms:
    """Batched imagefolder_transforms (data.decode=bytes) on lists of decoded uint8 images: both views and eval."""
    declared = split_file_recipe(recipe, image_size, resize_size, mean, std)
    return ImageListTransforms(*gpu_views(declared, augment, image_list=True))
