"""The augmentation recipes: per image on the CPU (`recipes.py`) and batched on the device (`gpu.py`)."""

from ecl_lightning.data.transforms.recipes import (
    CIFAR_MEAN,
    CIFAR_STD,
    FMNIST_MEAN,
    FMNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INAT_MEAN,
    INAT_STD,
    Cutout,
    cifar_transforms,
    eval_transform,
    fmnist_transforms,
    imagefolder_transforms,
    small_transforms,
)

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "FMNIST_MEAN",
    "FMNIST_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INAT_MEAN",
    "INAT_STD",
    "Cutout",
    "cifar_transforms",
    "eval_transform",
    "fmnist_transforms",
    "imagefolder_transforms",
    "small_transforms",
]
