"""Long-tailed datasets: the profile, one DataModule per dataset family, and their transforms."""

from ecl_lightning.data.datamodules.base import BaseDataModule
from ecl_lightning.data.datamodules.cifar import CIFARLTDataModule
from ecl_lightning.data.datamodules.fmnist import FashionMNISTLTDataModule
from ecl_lightning.data.datamodules.image_folder import ImageFolderDataModule
from ecl_lightning.data.datamodules.in_memory import InMemoryDataModule
from ecl_lightning.data.datamodules.split_file import (
    ImageNetLTDataModule,
    INaturalist2018DataModule,
    PlacesLTDataModule,
    SplitFileDataModule,
)
from ecl_lightning.data.datasets.array import ImageArrayDataset
from ecl_lightning.data.datasets.cifar_pickle import read_cifar_batch
from ecl_lightning.data.datasets.class_folders import scan_class_folders
from ecl_lightning.data.datasets.idx import read_idx
from ecl_lightning.data.datasets.image_files import ImageFileDataset, load_image
from ecl_lightning.data.datasets.split_file import parse_split_json, parse_split_txt
from ecl_lightning.data.datasets.views import ImageDataset, TwoViews
from ecl_lightning.data.errors import DatasetFormatError, DatasetNotFoundError
from ecl_lightning.data.input_spec import InputSpec
from ecl_lightning.data.interface import LongTailData
from ecl_lightning.data.longtail import balanced_holdout_indices, longtail_counts, select_longtail_indices
from ecl_lightning.data.transforms.gpu import Cutout
from ecl_lightning.data.transforms.recipes import (
    cifar_transforms,
    eval_transform,
    fmnist_transforms,
    imagefolder_transforms,
    small_transforms,
)

__all__ = [
    "BaseDataModule",
    "CIFARLTDataModule",
    "Cutout",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "FashionMNISTLTDataModule",
    "INaturalist2018DataModule",
    "ImageArrayDataset",
    "ImageDataset",
    "ImageFileDataset",
    "ImageFolderDataModule",
    "ImageNetLTDataModule",
    "InMemoryDataModule",
    "InputSpec",
    "LongTailData",
    "PlacesLTDataModule",
    "SplitFileDataModule",
    "TwoViews",
    "balanced_holdout_indices",
    "cifar_transforms",
    "eval_transform",
    "fmnist_transforms",
    "imagefolder_transforms",
    "load_image",
    "longtail_counts",
    "parse_split_json",
    "parse_split_txt",
    "read_cifar_batch",
    "read_idx",
    "scan_class_folders",
    "select_longtail_indices",
    "small_transforms",
]
