"""Shared test setup: make `from datagen import ...` work and provide tiny datasets in the real formats."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from datagen import write_cifar_dataset, write_idx_dataset  # noqa: E402


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST IDX files: 10 classes, 50 train (n_max 40 + val_per_class 5 fit), 10 test per class."""
    return write_idx_dataset(tmp_path_factory.mktemp("fmnist"), n_train_per_class=50, n_test_per_class=10)


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR-10 pickle batches: 25 train and 10 test images per class (enough for n_max 20)."""
    return write_cifar_dataset(tmp_path_factory.mktemp("cifar10"), 10, n_train_per_class=25, n_test_per_class=10)


@pytest.fixture(scope="session")
def cifar100_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR-100 pickle files: 20 train and 3 test images per class (enough for n_max 20)."""
    return write_cifar_dataset(tmp_path_factory.mktemp("cifar100"), 100, n_train_per_class=20, n_test_per_class=3)
