"""Fashion-MNIST-LT DataModule on tiny IDX files written in the real format."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datagen import FMNIST_FILES, write_idx_dataset, write_idx_file
from ecl_lightning.data import DatasetFormatError, DatasetNotFoundError, FashionMNISTLTDataModule, read_idx
from ecl_lightning.data.datamodules import fmnist as fmnist_module

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def make(data_dir, **kw) -> FashionMNISTLTDataModule:
    kw = {"n_max": 40, "imbalance_factor": 10, "val_per_class": 5, "batch_size": 16, "num_workers": 0} | kw
    return FashionMNISTLTDataModule(str(data_dir), **kw)


def file_targets(data_dir) -> np.ndarray:
    with gzip.open(Path(data_dir) / "train-labels-idx1-ubyte.gz") as f:
        return np.frombuffer(f.read()[8:], np.uint8).astype(np.int64)


def test_counts_subset_and_splits(fmnist_dir):
    dm = make(fmnist_dir)
    assert dm.class_counts == [
        40,
        30,
        23,
        18,
        14,
        11,
        8,
        6,
        5,
        4,
    ]  # floor(40 * 10^(-i/9)): 40, 30.97, 23.98, 18.57, ...
    targets = file_targets(fmnist_dir)
    info = dm.subset_info()
    expected = sorted(i for c, n in enumerate(dm.class_counts) for i in np.flatnonzero(targets == c)[:n])
    assert info["train_indices"] == expected  # first n_c of each class in file order
    val = info["val_indices"]
    assert len(val) == 50 and np.bincount(targets[val], minlength=10).tolist() == [5] * 10
    assert not set(val) & set(info["train_indices"])
    assert json.loads(json.dumps(info))["class_counts"] == dm.class_counts
    assert info["dataset"] == "fmnist_lt" and info["n_max"] == 40 and info["imbalance_factor"] == 10


def test_setup_is_idempotent(fmnist_dir):
    dm = make(fmnist_dir)
    dm.setup("fit")
    train_set = dm.train_set
    dm.setup("test")
    assert dm.train_set is train_set


def test_loaders_shapes_dtypes_and_views(fmnist_dir):
    torch.manual_seed(0)
    dm = make(fmnist_dir)
    x1, x2, y = next(iter(dm.train_dataloader()))
    assert x1.shape == x2.shape == (16, 1, 28, 28) and x1.dtype == torch.float32 and y.dtype == torch.int64
    assert not torch.equal(x1, x2)
    assert len(dm.train_dataloader()) == sum(dm.class_counts) // 16  # drop_last
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (16, 1, 28, 28) and y.dtype == torch.int64
    # normalised grey values: (0 - 0.286) / 0.353 .. (1 - 0.286) / 0.353
    assert x.min() >= -0.82 and x.max() <= 2.03
    test_y = torch.cat([b[1] for b in dm.test_dataloader()])
    assert torch.bincount(test_y).tolist() == [10] * 10
    assert sum(len(b[1]) for b in dm.val_dataloader()) == 50


def test_eval_view_matches_file_pixels(fmnist_dir):
    dm = make(fmnist_dir, augment=False)
    dm.setup()
    x1, x2, y = dm.train_set[0]
    assert torch.equal(x1, x2)
    first = read_idx(Path(fmnist_dir) / "train-images-idx3-ubyte.gz", 2051)[dm.subset_info()["train_indices"][0]]
    torch.testing.assert_close(x1[0], (torch.from_numpy(first.copy()).float() / 255 - 0.2860) / 0.3530)


def test_ungzipped_files_and_torchvision_layout(tmp_path):
    write_idx_dataset(tmp_path / "FashionMNIST" / "raw", 50, 2, gzip=False)
    dm = make(tmp_path)
    dm.check()
    assert dm.class_counts[0] == 40
    assert len(dm.test_set) == 20


def test_missing_files_message(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist_module, "SYSTEM_DIRS", ("/nonexistent/fashion-mnist",))
    dm = make(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError) as err:
        dm.check()
    message = str(err.value)
    for place in (
        tmp_path / "nowhere",
        tmp_path / "nowhere" / "FashionMNIST" / "raw",
        "/nonexistent/fashion-mnist",
    ):
        assert str(place) in message
    assert "apt-get install dataset-fashion-mnist" in message and "data.download=true" in message
    with pytest.raises(DatasetNotFoundError):
        dm.setup()


def test_wrong_magic_names_the_file(tmp_path):
    write_idx_dataset(tmp_path, 50, 2)
    bad = write_idx_file(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((500, 28, 28), np.uint8))  # 2051
    with pytest.raises(DatasetFormatError, match=f"{bad}.*magic number 2051, expected 2049"):
        make(tmp_path).setup()


def test_truncated_file_names_the_file(tmp_path):
    write_idx_dataset(tmp_path, 50, 2, gzip=False)
    path = tmp_path / FMNIST_FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetFormatError, match=f"{path}.*truncated"):
        make(tmp_path).setup()


def test_cut_gzip_stream_names_the_file(tmp_path):
    write_idx_dataset(tmp_path, 50, 2)
    path = tmp_path / (FMNIST_FILES["test_images"] + ".gz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetFormatError, match=str(path)):
        make(tmp_path).setup()


def test_too_few_images_for_profile(fmnist_dir):
    with pytest.raises(DatasetFormatError, match="val_per_class"):
        make(fmnist_dir, val_per_class=20).setup()


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_debian_package_files(tmp_path):
    dm = FashionMNISTLTDataModule(str(tmp_path), num_workers=0)
    dm.setup()
    assert dm.class_counts == [600, 359, 215, 129, 77, 46, 27, 16, 10, 6]
    assert len(dm.test_set) == 10000 and len(dm.val_set) == 1000
    assert torch.bincount(dm.test_set.targets).tolist() == [1000] * 10
    assert all(str(p).startswith(str(DEBIAN_DIR)) for p in dm.subset_info()["files"].values())
    assert len(read_idx(DEBIAN_DIR / "train-images-idx3-ubyte.gz", 2051)) == 60000


def test_worker_processes_and_batch_size_check(fmnist_dir):
    dm = make(fmnist_dir, num_workers=2, persistent_workers=True)
    loader = dm.train_dataloader()
    assert loader.persistent_workers and loader.num_workers == 2
    assert not make(fmnist_dir, num_workers=0).train_dataloader().persistent_workers
    x1, x2, y = next(iter(loader))
    assert x1.shape == (16, 1, 28, 28) and y.dtype == torch.int64
    with pytest.raises(ValueError, match="data.batch_size=1000"):
        make(fmnist_dir, batch_size=1000).train_dataloader()
