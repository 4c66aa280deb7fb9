"""A user's own data: a folder of class sub-folders (root/<class>/<image>, nested folders allowed).

Two layouts (README "Your own data"):
- root/train/<class>/..., with root/val/<class>/... and root/test/<class>/... where given: the splits as they are;
- root/<class>/...: one folder, split deterministically into a balanced validation set (`val_per_class` images per
  class, drawn with `split_seed`) and the rest for training.
Without a test/ folder the test split is the validation split (said in the log). The class counts, so the prior and
the shot splits, come from the training images; `imbalance_factor` cuts a balanced folder into a long-tailed one.
Every problem of the folder (an empty class, fewer than two classes, a class of val/test missing from train, a file
that is not an image with `verify_images`; datasets/class_folders.py finds them) is gathered into one error, one line
per path, before training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ecl_lightning.config import ConfigError
from ecl_lightning.data.datamodules.base import BaseDataModule
from ecl_lightning.data.datasets.class_folders import class_folder_problems, scan_class_folders
from ecl_lightning.data.datasets.image_files import ImageFileDataset
from ecl_lightning.data.datasets.views import TwoViews
from ecl_lightning.data.errors import DatasetFormatError, DatasetNotFoundError
from ecl_lightning.data.input_spec import InputSpec
from ecl_lightning.data.longtail import longtail_counts
from ecl_lightning.data.transforms.recipes import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagefolder_transforms,
    small_transforms,
)

log = logging.getLogger("ecl_lightning")

# preset: (image_size, resize_size); `small` is the 32 px CIFAR-size recipe, `imagenet` the 224 px ImageNet-LT one.
PRESETS = {"small": (32, 32), "imagenet": (224, 256)}
SPLITS = ("train", "val", "test")
MAX_SHOWN = 10  # problems quoted per kind in the error


class ImageFolderDataModule(BaseDataModule):
    """A long-tailed (or, with `imbalance_factor`, made long-tailed) data set given as a folder of class folders.

    `channels` 1 decodes every image as grey (L), 3 as RGB. `preset` sets the image size and the augmentation
    (`small`: 32 px, crop + flip; `imagenet`: 224 px, the ImageNet-LT RandAugment recipe); `image_size`,
    `resize_size`, `crop_padding`, `mean` and `std` override it.
    """

    name = "image_folder"

    def __init__(
        self,
        data_dir: str,
        preset: str = "small",
        channels: int = 3,
        image_size: int | None = None,
        resize_size: int | None = None,
        crop_padding: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        val_per_class: int = 20,
        split_seed: int = 0,
        imbalance_factor: float | None = None,
        n_max: int | None = None,
        verify_images: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if preset not in PRESETS:
            raise ConfigError(f"data.preset must be one of {sorted(PRESETS)}, got {preset!r}")
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels}")
        if val_per_class < 0:
            raise ConfigError(f"data.val_per_class must be >= 0, got {val_per_class}")
        if imbalance_factor is not None and imbalance_factor < 1:
            raise ConfigError(f"data.imbalance_factor must be >= 1 (n_max / n_min) or null, got {imbalance_factor}")
        self.root = Path(data_dir).expanduser()
        self.preset = preset
        self.in_chans = channels
        size, resize = PRESETS[preset]
        image_size = int(image_size or size)
        resize_size = int(resize_size or (image_size if preset == "small" else resize))
        default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
        if channels == 1:  # the grey equivalent of the RGB statistics
            default_mean, default_std = (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
        self.spec = InputSpec(
            channels,
            image_size,
            resize_size,
            tuple(float(m) for m in (mean or default_mean)),
            tuple(float(s) for s in (std or default_std)),
        )
        self.crop_padding = int(crop_padding if crop_padding is not None else image_size // 8)
        self.val_per_class = int(val_per_class)
        self.split_seed = int(split_seed)
        self.imbalance_factor = float(imbalance_factor) if imbalance_factor is not None else None
        self.n_max = int(n_max) if n_max is not None else None
        self.verify_images = verify_images
        self.split_layout = (self.root / "train").is_dir()
        self.has_val = (self.split_layout and (self.root / "val").is_dir()) or self.val_per_class > 0
        self._scanned = None
        self._ready = False

    # ---- the folder -------------------------------------------------------------------------------------
    def input_spec(self) -> InputSpec:
        """What the model trained on this data expects (eval preprocessing): used by predict and export."""
        return self.spec

    def transforms(self, augment: bool) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(train view 1, train view 2, eval) on decoded PIL images: the `small` recipe, or the ImageNet-LT one."""
        if self.preset == "small":
            return small_transforms(self.spec, self.crop_padding, augment)
        spec = self.spec
        return imagefolder_transforms("randaugment", spec.image_size, spec.resize_size, spec.mean, spec.std, augment)

    def split_dirs(self) -> dict[str, Path]:
        """{split: folder} of the folders given: train/val/test under the root, or the root itself as `train`."""
        if not self.split_layout:
            return {"train": self.root}
        return {s: self.root / s for s in SPLITS if (self.root / s).is_dir()}

    def check(self) -> None:
        """Scan the folder(s); raise one DatasetFormatError listing every problem, one line per path."""
        if self._scanned is not None:
            return
        if not self.root.is_dir():
            raise DatasetNotFoundError(
                f"image folder {self.root} (data.data_dir) is not a directory: pass data.data_dir=<folder> holding "
                "one sub-folder of images per class (or train/, val/, test/ folders that do)"
            )
        scans = {s: scan_class_folders(d, all_files=self.verify_images) for s, d in self.split_dirs().items()}
        problems = class_folder_problems(scans, self.verify_images, self.in_chans, workers=max(1, self.num_workers))
        if problems:
            shown = problems[:MAX_SHOWN]
            more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
            raise DatasetFormatError(f"{len(problems)} problem(s) in {self.root}:\n" + "\n".join(shown) + more)
        self._scanned = scans

    @property
    def class_names(self) -> list[str]:
        """The class folder names of the training folder, sorted: class i is the i-th name."""
        self.check()
        return list(self._scanned["train"].names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ---- the splits -------------------------------------------------------------------------------------
    def _split_train_val(self, per_class: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
        """Balanced val: `val_per_class` images per class drawn with `split_seed`; a class too small keeps one
        training image (said in the log). The same folder and seed always give the same split."""
        rng = np.random.default_rng(self.split_seed)
        train, val, short = [], [], []
        for name, files in zip(self.class_names, per_class, strict=True):
            order = rng.permutation(len(files))
            n_val = min(self.val_per_class, len(files) - 1)
            if n_val < self.val_per_class:
                short.append(f"{name} ({len(files)} images: {n_val} val)")
            val.append(sorted(files[i] for i in order[:n_val]))
            train.append([files[i] for i in order[n_val:]])  # shuffled order: the long-tail cut takes a random subset
        if short:
            log.warning(
                "%d class(es) have too few images for data.val_per_class=%d and keep one for training: %s",
                len(short), self.val_per_class, "; ".join(short[:MAX_SHOWN]),
            )  # fmt: skip
        return train, val

    def _cut_longtail(self, per_class: list[list[str]]) -> list[list[str]]:
        """With `imbalance_factor`, keep n_max * IF^(-i/(C-1)) training images of class i (sorted name order)."""
        if self.imbalance_factor is None:
            return per_class
        available = [len(files) for files in per_class]
        n_max = self.n_max or min(available)
        counts = longtail_counts(n_max, len(per_class), self.imbalance_factor)
        short = [
            f"{self._scanned['train'].root / name} has {have} training images, the profile asks for {want}"
            for name, have, want in zip(self.class_names, available, counts, strict=True)
            if have < want
        ]
        if short:
            raise DatasetFormatError(
                "\n".join(short) + f"\nlower data.n_max (now {n_max}) or data.imbalance_factor, or add images"
            )
        return [files[:n] for files, n in zip(per_class, counts, strict=True)]

    def setup(self, stage: str | None = None) -> None:
        """Build the train / val / test sets from the scanned folders; idempotent."""
        if self._ready:
            return
        self.check()
        index = {name: c for c, name in enumerate(self.class_names)}
        train_scan = self._scanned["train"]
        if self.split_layout and "val" in self._scanned:
            train_files, val_files = [list(f) for f in train_scan.files], None
        elif self.val_per_class > 0:
            train_files, val_files = self._split_train_val(train_scan.files)
        else:
            train_files, val_files = [list(f) for f in train_scan.files], None
        train_files = self._cut_longtail(train_files)

        def flat(root: Path, names: list[str], per_class: list[list[str]]) -> tuple[list[str], list[int]]:
            files = [str(root.relative_to(self.root) / f) for files in per_class for f in sorted(files)]
            labels = [index[n] for n, files in zip(names, per_class, strict=True) for _ in files]
            return files, labels

        self.splits = {"train": flat(train_scan.root, self.class_names, train_files)}
        if val_files is not None:
            self.splits["val"] = flat(train_scan.root, self.class_names, val_files)
        for split in ("val", "test"):
            if split in self._scanned:
                scan = self._scanned[split]
                self.splits[split] = flat(scan.root, scan.names, scan.files)
        if "test" not in self.splits:
            if "val" not in self.splits:
                raise DatasetFormatError(
                    f"{self.root}: no test/ and no val/ folder, and data.val_per_class=0: nothing to test on; "
                    "set data.val_per_class > 0 or add a test/ folder"
                )
            log.info("%s has no test/ folder: the test split is the validation split.", self.root)
            self.splits["test"] = self.splits["val"]

        view1, view2, evaluate = self.transforms(self.augment)
        chans = self.in_chans
        self.train_set = ImageFileDataset(self.root, *self.splits["train"], TwoViews(view1, view2), channels=chans)
        self.val_set = (
            ImageFileDataset(self.root, *self.splits["val"], evaluate, channels=chans) if self.has_val else None
        )
        self.test_set = ImageFileDataset(self.root, *self.splits["test"], evaluate, channels=chans)
        self._ready = True

    def subset_info(self) -> dict:
        """JSON record of the data used: class names and counts, and every split's files (relative to the root)."""
        self.setup()
        return {
            "dataset": self.name,
            "root": str(self.root),
            "layout": "train/val/test folders" if self.split_layout else "one folder, split by val_per_class",
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "class_counts": self.class_counts,
            "imbalance_factor": self.imbalance_factor,
            "val_per_class": self.val_per_class if not (self.split_layout and "val" in self._scanned) else None,
            "split_seed": self.split_seed,
            "input": self.spec.to_dict(),
            "num_images": {split: len(files) for split, (files, _) in self.splits.items()},
            "files": {split: files for split, (files, _) in self.splits.items()},
        }
