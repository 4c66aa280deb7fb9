"""CIFAR-10-LT / CIFAR-100-LT DataModule on tiny pickle batches written in torchvision's layout."""

import json
import pickle

import numpy as np
import pytest
import torch

from datagen import write_cifar_dataset
from ecl_lightning.data import CIFARLTDataModule, DatasetFormatError, DatasetNotFoundError
from ecl_lightning.data.transforms import CIFAR_MEAN, CIFAR_STD


def make(data_dir, num_classes, **kw) -> CIFARLTDataModule:
    kw = {"n_max": 20, "imbalance_factor": 10, "batch_size": 8, "num_workers": 0} | kw
    return CIFARLTDataModule(str(data_dir), num_classes=num_classes, **kw)


def load(path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def save(path, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def test_default_profiles():
    assert CIFARLTDataModule("x", num_classes=10).n_max == 5000
    assert CIFARLTDataModule("x", num_classes=100).n_max == 500
    with pytest.raises(ValueError, match="10 or 100"):
        CIFARLTDataModule("x", num_classes=20)


def test_cifar10_counts_subset_and_loaders(cifar10_dir):
    torch.manual_seed(0)
    dm = make(cifar10_dir, 10)
    dm.check()
    assert dm.class_counts == [
        20,
        15,
        11,
        9,
        7,
        5,
        4,
        3,
        2,
        2,
    ]  # floor(20 * 10^(-i/9)): 20, 15.49, 11.99, 9.28, ...
    folder = cifar10_dir / "cifar-10-batches-py"
    labels = np.concatenate([load(folder / f"data_batch_{i}")[b"labels"] for i in range(1, 6)])
    info = json.loads(json.dumps(dm.subset_info()))
    expected = sorted(i for c, n in enumerate(dm.class_counts) for i in np.flatnonzero(labels == c)[:n])
    assert info["train_indices"] == expected and info["val_indices"] is None
    assert info["dataset"] == "cifar10_lt"
    assert not dm.has_val and dm.val_dataloader() == []

    x1, x2, y = next(iter(dm.train_dataloader()))
    assert x1.shape == x2.shape == (8, 3, 32, 32) and x1.dtype == torch.float32 and y.dtype == torch.int64
    assert not torch.equal(x1, x2)
    x, y = next(iter(dm.test_dataloader()))
    low = (0 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD)
    high = (1 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD)
    assert (x.amin((0, 2, 3)) >= low - 1e-5).all() and (x.amax((0, 2, 3)) <= high + 1e-5).all()
    assert torch.bincount(torch.cat([b[1] for b in dm.test_dataloader()])).tolist() == [10] * 10


def test_cifar_pixels_are_chw_rows(cifar10_dir):
    dm = make(cifar10_dir, 10, augment=False)
    dm.setup()
    i = dm.subset_info()["train_indices"][3]  # still in batch 1: 50 images per batch
    raw = load(cifar10_dir / "cifar-10-batches-py" / "data_batch_1")
    row = torch.from_numpy(raw[b"data"][i].reshape(3, 32, 32)).float() / 255
    expected = (row - torch.tensor(CIFAR_MEAN)[:, None, None]) / torch.tensor(CIFAR_STD)[:, None, None]
    x1, x2, y = dm.train_set[3]
    torch.testing.assert_close(x1, expected)
    assert torch.equal(x1, x2) and y.item() == raw[b"labels"][i]


def test_cifar100_fine_labels(cifar100_dir):
    dm = make(cifar100_dir, 100)
    counts = dm.class_counts
    assert len(counts) == 100 and counts[0] == 20 and counts[-1] == 2 and dm.subset_info()["dataset"] == "cifar100_lt"
    assert torch.bincount(dm.test_set.targets, minlength=100).tolist() == [3] * 100
    x1, x2, y = next(iter(dm.train_dataloader()))
    assert x1.shape == (8, 3, 32, 32) and y.max() < 100


def test_str_keys_and_extracted_folder_as_data_dir(tmp_path):
    root = write_cifar_dataset(tmp_path, 100, 20, 1)
    folder = root / "cifar-100-python"
    for name in ("train", "test"):  # latin1-style pickles with str keys must load too
        entry = load(folder / name)
        save(folder / name, {k.decode(): v for k, v in entry.items()})
    assert make(folder, 100).class_counts[0] == 20


def test_missing_files_message(tmp_path):
    dm = make(tmp_path, 10)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.check()
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "data.download=true" in message
    assert "cifar-10-python.tar.gz" in message
    make(tmp_path, 10, download=True).check()  # download on: the files come in prepare_data


def test_bad_batch_names_the_file(tmp_path):
    root = write_cifar_dataset(tmp_path, 10, 25, 1)
    bad = root / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(DatasetFormatError, match=str(bad)):
        make(root, 10).setup()
    save(bad, {b"data": np.zeros((5, 100), np.uint8), b"labels": [0] * 5})
    with pytest.raises(DatasetFormatError, match=f"{bad}.*shape"):
        make(root, 10).setup()
