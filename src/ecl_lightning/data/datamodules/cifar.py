"""CIFAR-10-LT / CIFAR-100-LT from torchvision's extracted pickle batches (datasets/cifar_pickle.py reads them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ecl_lightning.config import ConfigError
from ecl_lightning.data.datamodules.in_memory import InMemoryDataModule
from ecl_lightning.data.datasets.cifar_pickle import read_cifar_batch
from ecl_lightning.data.errors import DatasetNotFoundError
from ecl_lightning.data.input_spec import InputSpec
from ecl_lightning.data.transforms.recipes import CIFAR_MEAN, CIFAR_STD, cifar_gpu_transforms, cifar_transforms

# folder inside data_dir, train files, test files, label key, download URL (torchvision's layout)
LAYOUTS = {
    10: (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "labels",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    100: (
        "cifar-100-python",
        ("train",),
        ("test",),
        "fine_labels",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}


class CIFARLTDataModule(InMemoryDataModule):
    """CIFAR-10-LT / CIFAR-100-LT (num_classes 10 or 100); no val split: report the last epoch (docs/method.md 5)."""

    has_val = False
    in_chans = 3

    def __init__(self, data_dir: str, num_classes: int = 10, **options: Any) -> None:
        if num_classes not in LAYOUTS:
            raise ConfigError(f"data.num_classes must be 10 or 100 for CIFAR, got {num_classes}")
        self.num_classes = num_classes
        self.name = f"cifar{num_classes}_lt"
        self.default_n_max = 5000 if num_classes == 10 else 500
        super().__init__(data_dir, **options)

    def search_dirs(self) -> list[Path]:
        """Directories searched, in order: torchvision's folder inside data_dir, then data_dir itself."""
        return [self.data_dir / LAYOUTS[self.num_classes][0], self.data_dir]

    def _find_files(self) -> dict[str, Path]:
        folder, train_names, test_names, _, url = LAYOUTS[self.num_classes]
        names = (*train_names, *test_names)
        for directory in self.search_dirs():
            if all((directory / n).is_file() for n in names):
                return {n: directory / n for n in names}
        looked = "\n".join(f"  - {d}" for d in self.search_dirs())
        raise DatasetNotFoundError(
            f"CIFAR-{self.num_classes} files ({', '.join(names)}) not found in:\n{looked}\n"
            "Get them with one of:\n"
            "  - set data.download=true when online (torchvision download into data_dir);\n"
            f"  - download {url} and extract it in {self.data_dir} (giving {self.data_dir / folder})."
        )

    def _download(self) -> None:
        from torchvision.datasets import CIFAR10, CIFAR100

        (CIFAR10 if self.num_classes == 10 else CIFAR100)(root=str(self.data_dir), train=True, download=True)

    def _load_arrays(self, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        _, train_names, test_names, label_key, _ = LAYOUTS[self.num_classes]

        def read(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
            parts = [read_cifar_batch(files[n], label_key, self.num_classes) for n in names]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

        return (*read(train_names), *read(test_names))

    def input_spec(self) -> InputSpec:
        """32x32 RGB, normalised with the CIFAR statistics (what predict and export feed the model)."""
        return InputSpec(3, 32, 32, CIFAR_MEAN, CIFAR_STD)

    def transforms(self, augment: bool) -> tuple[nn.Module, nn.Module, nn.Module]:
        return cifar_transforms(augment)

    def _gpu_transforms(self, augment: bool) -> nn.Module:
        return cifar_gpu_transforms(augment)
