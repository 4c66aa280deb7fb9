"""Long-tailed datasets: the profile, one DataModule per dataset family, and their transforms."""

from ecl_lightning.data.base import ImageArrayDataset, LongTailDataModule, TwoViewDataset
from ecl_lightning.data.cifar import CIFARLTDataModule, read_cifar_batch
from ecl_lightning.data.errors import DatasetFormatError, DatasetNotFoundError
from ecl_lightning.data.fmnist import FashionMNISTLTDataModule, read_idx
from ecl_lightning.data.longtail import balanced_holdout_indices, longtail_counts, select_longtail_indices
from ecl_lightning.data.transforms import Cutout, cifar_transforms, fmnist_transforms

__all__ = [
    "CIFARLTDataModule",
    "Cutout",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "FashionMNISTLTDataModule",
    "ImageArrayDataset",
    "LongTailDataModule",
    "TwoViewDataset",
    "balanced_holdout_indices",
    "cifar_transforms",
    "fmnist_transforms",
    "longtail_counts",
    "read_cifar_batch",
    "read_idx",
    "select_longtail_indices",
]
