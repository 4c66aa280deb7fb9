"""ImageNet-LT, Places-LT and iNaturalist 2018: JPEG folders listed by split files, decoded with PIL per item, or
(data.decode=bytes) read as bytes by the workers and decoded and augmented in batches on the training device."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ecl_lightning.config import ConfigError, SplitFileOptions
from ecl_lightning.data.datamodules.base import BaseDataModule
from ecl_lightning.data.datasets.encoded import DECODE_CHOICES, EncodedBatch, EncodedImageDataset, decode_batch
from ecl_lightning.data.datasets.image_files import ImageFileDataset
from ecl_lightning.data.datasets.split_file import (
    SplitEntries,
    describe_problems,
    missing_files,
    parse_split_json,
    parse_split_txt,
    undecodable_files,
    unreadable_headers,
)
from ecl_lightning.data.datasets.views import TwoViews
from ecl_lightning.data.errors import DatasetFormatError, DatasetNotFoundError
from ecl_lightning.data.input_spec import InputSpec
from ecl_lightning.data.transforms.recipes import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INAT_MEAN,
    INAT_STD,
    imagefolder_transforms,
    split_file_gpu_transforms,
)

log = logging.getLogger("ecl_lightning")

DECODE_FIX = (
    "Replace the file or remove its line from the split file (data.verify_images=true decodes every image before "
    "training)"
)


class SplitFileDataModule(BaseDataModule):
    """Shared base of the split-file benchmarks: images under `image_root`, one `path label` file per split.

    Subclasses set `name`, `default_num_classes`, `has_val`, `split_names` ({format: {split: file name}}),
    `recipe`, `mean`/`std` and `how_to_get`. Without a val split, `test` reads the file named for `test`.

    With `decode="bytes"` the loaders of Lightning's loops (train always; val and test once a trainer is attached)
    yield `EncodedBatch`es of file bytes, and `transfer_batch_to_device` decodes them on the device and builds the
    two views (or the eval crop) there. A val/test loader asked for without a trainer (the evaluation protocols)
    decodes with PIL in its workers, since its caller runs no batch hooks. `train_set`, `val_set` and `test_set` are
    the PIL datasets either way.
    """

    options_type = SplitFileOptions
    name: str = "splitfile"
    default_num_classes: int
    in_chans: int = 3
    has_val: bool = True
    split_names: dict[str, dict[str, str]]
    recipe: str = "randaugment"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    how_to_get: str = ""

    def __init__(
        self,
        split_dir: str,
        image_root: str | None = None,
        image_size: int = 224,
        resize_size: int = 256,
        num_classes: int | None = None,
        verify_images: bool = False,
        split_format: str = "auto",
        check_headers: bool = True,
        decode: str = "pil",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if decode not in DECODE_CHOICES:
            raise ConfigError(
                f"data.decode must be one of {DECODE_CHOICES} (pil: decode and augment in the loader workers; bytes: "
                f"workers read the files, the training device decodes and augments in batches), got {decode!r}"
            )
        self.decode = decode
        self.split_dir = Path(split_dir).expanduser()
        self.image_root = Path(image_root).expanduser() if image_root is not None else self.split_dir
        self.image_size, self.resize_size = int(image_size), int(resize_size)
        self.num_classes = int(num_classes) if num_classes is not None else self.default_num_classes
        self.verify_images = verify_images
        self.check_headers = check_headers
        self.split_format = split_format
        formats = ("auto", *self.split_names)
        if split_format not in formats:
            raise ConfigError(f"data.split_format must be one of {formats} for {self.name}, got {split_format!r}")
        if self.num_classes < 1:
            raise ConfigError(f"data.num_classes must be >= 1, got {self.num_classes}")
        if self.resize_size < self.image_size:
            raise ConfigError(
                f"data.resize_size={self.resize_size} is smaller than data.image_size={self.image_size}; "
                "the eval centre crop would pad the image"
            )
        self._ready = False

    def input_spec(self) -> InputSpec:
        """RGB, shorter side resized to resize_size, centre crop image_size, normalised (the eval transform)."""
        return InputSpec(3, self.image_size, self.resize_size, tuple(self.mean), tuple(self.std))

    def transforms(self, augment: bool) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(train view 1, train view 2, eval) on decoded PIL images: the benchmark's `recipe`, size and statistics."""
        return imagefolder_transforms(self.recipe, self.image_size, self.resize_size, self.mean, self.std, augment)

    # ---- files ------------------------------------------------------------------------------------------
    def split_files(self) -> tuple[str, dict[str, Path]]:
        """(format, {split: path}) of the split files; DatasetNotFoundError listing what is missing."""
        candidates = self.split_names if self.split_format == "auto" else {self.split_format: {}}
        tried = []
        for fmt in candidates:
            paths = {split: self.split_dir / name for split, name in self.split_names[fmt].items()}
            if all(p.is_file() for p in paths.values()):
                return fmt, paths
            tried.append(", ".join(p.name for p in paths.values() if not p.is_file()))
        raise DatasetNotFoundError(
            f"{self.name} split files not found in {self.split_dir} (data.split_dir): missing "
            f"{' / or '.join(tried)}.\n{self.how_to_get}"
        )

    def _parse(self, fmt: str, path: Path) -> SplitEntries:
        return (parse_split_json if fmt == "json" else parse_split_txt)(path, self.num_classes)

    # ---- LightningDataModule API ------------------------------------------------------------------------
    def check(self) -> None:
        """Raise DatasetNotFoundError now for a missing image root or split file (cheap: reads no split)."""
        if not self.image_root.is_dir():
            raise DatasetNotFoundError(
                f"{self.name} image root {self.image_root} (data.image_root) is not a directory.\n{self.how_to_get}"
            )
        self.split_files()

    def prepare_data(self) -> None:
        """Nothing to download: these benchmarks need their images fetched by hand (see `how_to_get`)."""

    def setup(self, stage: str | None = None) -> None:
        """Parse every split, check every line (label, duplicates, file exists, image header and end, or a full decode
        with verify_images); idempotent.

        All problems of all splits are gathered into one DatasetFormatError, raised before any loader is built.
        """
        if self._ready:
            return
        self.check()
        self.format, self.files = self.split_files()
        splits = {split: self._parse(self.format, path) for split, path in self.files.items()}
        for entries in splits.values():
            missing = missing_files(self.image_root, entries.files)
            entries.drop(missing, [f"image file not found: {self.image_root / entries.files[i]}" for i in missing])
            if self.verify_images:  # a full decode of every image (slow)
                bad = undecodable_files(self.image_root, entries.files, workers=self.num_workers)
            elif self.check_headers:  # header and end marker of every image (docs/performance.md: cost)
                bad = unreadable_headers(self.image_root, entries.files, workers=self.num_workers)
            else:
                bad = []
            entries.drop([i for i, _ in bad], [reason for _, reason in bad])
        reports = [r for r in map(describe_problems, splits.values()) if r]
        if reports:
            raise DatasetFormatError(
                "\n".join(reports) + f"\nFix or remove these lines; image paths are relative to data.image_root="
                f"{self.image_root}, labels must lie in [0, data.num_classes={self.num_classes})."
            )
        self.entries = splits
        empty = np.flatnonzero(np.bincount(splits["train"].labels, minlength=self.num_classes) == 0)
        if len(empty):
            log.warning(
                "%s: %d of %d classes have no training image (first: %s); check data.num_classes",
                self.files["train"], len(empty), self.num_classes, empty[:5].tolist(),
            )  # fmt: skip
        view1, view2, evaluate = self.transforms(self.augment)
        self.train_set = self._dataset(splits["train"], TwoViews(view1, view2))
        self.val_set = self._dataset(splits["val"], evaluate) if self.has_val else None
        self.test_set = self._dataset(splits["test"], evaluate)
        if self.decode == "bytes":
            self.gpu_transforms = split_file_gpu_transforms(
                self.recipe, self.image_size, self.resize_size, self.mean, self.std, self.augment
            )
        self._ready = True

    def _dataset(self, entries: SplitEntries, transform: nn.Module) -> ImageFileDataset:
        """The images of one split, decoded per item; a file that cannot be decoded names its split-file fix."""
        return ImageFileDataset(self.image_root, entries.files, entries.labels, transform, fix=DECODE_FIX)

    # ---- data.decode=bytes ------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        if self.decode == "bytes" and (train or self.trainer is not None):
            dataset = EncodedImageDataset.of(dataset, train=train)
        return super()._loader(dataset, batch_size, train)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """An EncodedBatch is decoded on `device` into (view 1, view 2, y) or (x, y); other batches are moved."""
        if isinstance(batch, EncodedBatch):
            return self.decode_on(batch, device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def decode_on(self, batch: EncodedBatch, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """Decode an EncodedBatch on `device` (nvJPEG on CUDA) and build its training views or its eval crop."""
        images = decode_batch(batch, device)
        targets = batch.targets.to(device)
        if batch.train:
            return (*self.gpu_transforms.two_views(images), targets)
        return self.gpu_transforms.eval_batch(images), targets

    def subset_info(self) -> dict:
        """JSON-serialisable record of the data used: split files, image root, counts per split and class."""
        self.setup()
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "class_counts": self.class_counts,
            "split_format": self.format,
            "image_root": str(self.image_root),
            "files": {split: str(path) for split, path in self.files.items()},
            "num_images": {split: len(entries.files) for split, entries in self.entries.items()},
        }


class ImageNetLTDataModule(SplitFileDataModule):
    """ImageNet-LT (OLTR): 1000 classes, 115,846 / 20,000 / 50,000 images; val from ImageNet train, test from val."""

    name = "imagenet_lt"
    default_num_classes = 1000
    has_val = True
    split_names = {"txt": {s: f"ImageNet_LT_{s}.txt" for s in ("train", "val", "test")}}
    how_to_get = (
        "ImageNet-LT needs the ILSVRC-2012 images (image-net.org; data.image_root holds train/ and val/, val sorted "
        "into class folders) and OLTR's split files ImageNet_LT_{train,val,test}.txt "
        "(github.com/zhmiao/OpenLongTailRecognition-OLTR) in data.split_dir."
    )


class PlacesLTDataModule(SplitFileDataModule):
    """Places-LT (OLTR): 365 classes, 62,500 / 7,300 / 36,500 images; SimCLR-style augmentation for both views."""

    name = "places_lt"
    default_num_classes = 365
    has_val = True
    recipe = "simclr"
    split_names = {"txt": {s: f"Places_LT_{s}.txt" for s in ("train", "val", "test")}}
    how_to_get = (
        "Places-LT needs the Places365-Standard 256x256 images (places2.csail.mit.edu; data.image_root holds "
        "data_256/ and val_256/) and OLTR's split files Places_LT_{train,val,test}.txt "
        "(github.com/zhmiao/OpenLongTailRecognition-OLTR) in data.split_dir."
    )


class INaturalist2018DataModule(SplitFileDataModule):
    """iNaturalist 2018: 8,142 classes, 437,513 train / 24,426 val images; val is the test split (no val)."""

    name = "inat2018"
    default_num_classes = 8142
    has_val = False
    mean, std = INAT_MEAN, INAT_STD
    split_names = {
        "txt": {"train": "iNaturalist18_train.txt", "test": "iNaturalist18_val.txt"},
        "json": {"train": "train2018.json", "test": "val2018.json"},
    }
    how_to_get = (
        "iNaturalist 2018 needs the official images (github.com/visipedia/inat_comp/tree/master/2018; "
        "data.image_root holds train_val2018/) and either iNaturalist18_{train,val}.txt (`path label` lines) or "
        "the official train2018.json / val2018.json in data.split_dir."
    )
