"""The augmentation recipes, declared once (`recipes.py`), built per image on the CPU and batched on the device
(`ops.py`) from the ops of torchvision and of `gpu.py` / `gpu_split_file.py`."""

from ecl_lightning.data.transforms.gpu import Cutout
from ecl_lightning.data.transforms.recipes import (
    CIFAR_MEAN,
    CIFAR_STD,
    FMNIST_MEAN,
    FMNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INAT_MEAN,
    INAT_STD,
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
