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


# Split-file benchmarks: 5 classes, long-tailed train counts SPLIT_TREE_TRAIN (12 ... 2), 3 val and 3 test images per
# class, 40x40 JPEGs.
@pytest.fixture(scope="session")
def imagenet_lt_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet-LT layout: images/train/n0.../n0..._k.JPEG, images/val/...; splits/ImageNet_LT_{train,val,test}.txt."""
    from datagen import SPLIT_TREE_TRAIN, write_split_tree

    return write_split_tree(tmp_path_factory.mktemp("imagenet_lt"), "imagenet_lt", 5, SPLIT_TREE_TRAIN, 3)


@pytest.fixture(scope="session")
def places_lt_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Places-LT layout: images/data_256/a/abbey/0000000k.jpg, images/val_256/...; splits/Places_LT_*.txt."""
    from datagen import SPLIT_TREE_TRAIN, write_split_tree

    return write_split_tree(tmp_path_factory.mktemp("places_lt"), "places_lt", 5, SPLIT_TREE_TRAIN, 3)


@pytest.fixture(scope="session")
def inat2018_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """iNat 2018: images/train_val2018/Plantae/0/<md5>.jpg; splits/iNaturalist18_*.txt and {train,val}2018.json."""
    from datagen import SPLIT_TREE_TRAIN, write_split_tree

    return write_split_tree(tmp_path_factory.mktemp("inat2018"), "inat2018", 5, SPLIT_TREE_TRAIN, 3)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the test: on the shared 2-core test machine, 2 threads under load make a batch norm
    ~100x slower than 1. Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data_dirs(fmnist_dir, cifar10_dir, cifar100_dir) -> dict[str, Path]:
    return {"fmnist": fmnist_dir, "cifar10_lt": cifar10_dir, "cifar100_lt": cifar100_dir}


@pytest.fixture(scope="module")
def trained_run(fmnist_dir, tmp_path_factory):
    """One tiny 2-epoch training run shared by a test module: (run dir, best checkpoint, metrics)."""
    from ecl_lightning.train import train
    from helpers import compose_cfg, tiny_overrides

    run_dir = tmp_path_factory.mktemp("run")
    overrides = ["trainer.max_epochs=2", "trainer.limit_test_batches=1"]
    cfg = compose_cfg(overrides + tiny_overrides("fmnist_lt", {"fmnist": fmnist_dir}), run_dir)
    metrics = train(cfg)
    (best,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    return run_dir, best, metrics
