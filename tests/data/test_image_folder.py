"""data=image_folder: the two layouts, the deterministic val split, the long-tail cut, grey images, and one clear
error per bad folder (naming the path) before anything is trained."""

import json

import pytest
import torch

from datagen import write_image_folder
from ecl_lightning.data import DatasetFormatError, DatasetNotFoundError, ImageFolderDataModule
from ecl_lightning.train import build, train
from helpers import compose_cfg, image_folder_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def datamodule(root, **kwargs) -> ImageFolderDataModule:
    kwargs = {"image_size": 16, "batch_size": 2, "num_workers": 0, "persistent_workers": False, **kwargs}
    return ImageFolderDataModule(str(root), **kwargs)


@pytest.fixture(scope="module")
def one_folder(tmp_path_factory):
    """cat 12, dog 8, fox 5, owl 2 images, mixed formats, sizes and modes, some nested."""
    return write_image_folder(tmp_path_factory.mktemp("own") / "photos", [12, 8, 5, 2])


def test_one_folder_is_split_into_balanced_val_and_train(one_folder, caplog):
    dm = datamodule(one_folder, val_per_class=3)
    dm.setup()
    assert dm.class_names == ["cat", "dog", "fox", "owl"] and dm.num_classes == 4
    assert dm.class_counts == [9, 5, 2, 1]  # owl (2 images) keeps one for training, and the log says so
    assert "owl (2 images: 1 val)" in caplog.text
    val_counts = torch.bincount(dm.val_set.targets, minlength=4).tolist()
    assert val_counts == [3, 3, 3, 1] and dm.test_set.files == dm.val_set.files  # no test/: test = val
    assert not set(dm.train_set.files) & set(dm.val_set.files)
    assert any("/more/" in f for f in dm.train_set.files + dm.val_set.files)  # nested folders are read
    again = datamodule(one_folder, val_per_class=3)
    again.setup()
    assert again.val_set.files == dm.val_set.files and again.train_set.files == dm.train_set.files
    other_seed = datamodule(one_folder, val_per_class=3, split_seed=1)
    other_seed.setup()
    assert other_seed.val_set.files != dm.val_set.files
    x1, x2, y = dm.train_set[0]
    assert x1.shape == x2.shape == (3, 16, 16) and dm.test_set[0][0].shape == (3, 16, 16)
    info = dm.subset_info()
    assert info["class_names"] == dm.class_names and info["num_images"] == {"train": 17, "val": 10, "test": 10}
    json.dumps(info)


def test_grey_images_with_channels_1(one_folder):
    dm = datamodule(one_folder, channels=1, image_size=12, val_per_class=1, augment=False)
    dm.setup()
    assert dm.in_chans == 1 and dm.input_spec().channels == 1 and len(dm.input_spec().mean) == 1
    assert dm.train_set[0][0].shape == (1, 12, 12) and dm.val_set[0][0].shape == (1, 12, 12)


def test_imbalance_factor_makes_a_balanced_folder_long_tailed(tmp_path):
    root = write_image_folder(tmp_path / "balanced", [10, 10, 10, 10])
    dm = datamodule(root, val_per_class=2, imbalance_factor=4)
    assert dm.class_counts == [8, 5, 3, 2]  # n_max = 8 (the smallest class after val), 8 * 4^(-i/3)
    with pytest.raises(DatasetFormatError, match=r"cat has 8 training images, the profile asks for 20"):
        datamodule(root, val_per_class=2, imbalance_factor=4, n_max=20).setup()


def test_train_val_test_folders(tmp_path):
    root = tmp_path / "splits"
    write_image_folder(root / "train", [6, 4, 2])
    write_image_folder(root / "val", [2, 2, 2], seed=1)
    write_image_folder(root / "test", [3, 3, 3], seed=2)
    dm = datamodule(root)
    assert dm.class_counts == [6, 4, 2] and dm.has_val
    assert len(dm.val_set) == 6 and len(dm.test_set) == 9
    assert all(f.startswith("test/") for f in dm.test_set.files)
    no_val = tmp_path / "no_val"
    write_image_folder(no_val / "train", [6, 4, 2])
    write_image_folder(no_val / "test", [3, 3, 3], seed=2)
    dm = datamodule(no_val, val_per_class=1)  # val split out of train/
    assert dm.class_counts == [5, 3, 1] and len(dm.val_set) == 3 and len(dm.test_set) == 9


def _empty_class(root):
    write_image_folder(root, [3, 3])
    (root / "emu").mkdir()
    return root / "emu", "class folder with no image files"


def _not_an_image(root):
    write_image_folder(root, [3, 3])
    (root / "dog" / "notes.txt").write_text("not an image")
    return root / "dog" / "notes.txt", "not an image PIL can read"


def _corrupt_image(root):
    write_image_folder(root, [3, 3])
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return root / "cat" / "broken.jpg", "not an image PIL can read"


def _class_missing_from_train(root):
    write_image_folder(root / "train", [3, 3])
    write_image_folder(root / "val", [1, 1, 1])  # fox has no training folder
    return root / "val" / "fox", "class 'fox' of the val split has no folder in"


def _one_class(root):
    write_image_folder(root, [4])
    return root, "1 class folder(s) (cat); a classifier needs at least two"


BAD_FOLDERS = [_empty_class, _not_an_image, _corrupt_image, _class_missing_from_train, _one_class]


@pytest.mark.parametrize("make", BAD_FOLDERS, ids=lambda f: f.__name__)
def test_bad_folder_is_one_error_naming_the_path(make, tmp_path):
    root = tmp_path / "bad"
    path, message = make(root)
    dm = datamodule(root, verify_images=True, val_per_class=1)
    with pytest.raises(DatasetFormatError) as err:
        dm.check()
    line = next(line for line in str(err.value).splitlines() if message in line)
    assert line.startswith(f"{path}: "), line


def test_a_corrupt_image_found_while_loading_names_the_file(tmp_path):
    path, _ = _corrupt_image(tmp_path / "f")
    dm = datamodule(tmp_path / "f", val_per_class=1)  # without verify_images: found when the item is read
    dm.setup()
    dataset = next(d for d in (dm.train_set, dm.val_set) if str(path.relative_to(tmp_path / "f")) in d.files)
    with pytest.raises(DatasetFormatError, match=rf"cannot decode image {path}: .*data.verify_images=true"):
        dataset[dataset.files.index(str(path.relative_to(tmp_path / "f")))]


def test_missing_folder_names_the_config_key(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nowhere \(data.data_dir\) is not a directory"):
        datamodule(tmp_path / "nowhere").check()


def test_non_images_skipped_without_verify_images(tmp_path, caplog):
    root = write_image_folder(tmp_path / "f", [3, 3])
    (root / "dog" / "notes.txt").write_text("a note")
    dm = datamodule(root, val_per_class=1)
    assert dm.class_counts == [2, 2] and "1 file(s) skipped, not images by their extension" in caplog.text


def test_fast_dev_run_stores_the_class_names(one_folder, tmp_path):
    metrics = train(compose_cfg([*image_folder_overrides(one_folder), "debug=fdr"], tmp_path))
    assert metrics["test/count"] == 7  # the whole test (= val) split: 2 + 2 + 2 + 1 images
    subset = json.loads((tmp_path / "data_subset.json").read_text())
    assert subset["class_names"] == ["cat", "dog", "fox", "owl"] and subset["class_counts"] == [10, 6, 3, 1]
    assert set(subset["files"]) == {"train", "val", "test"}
    per_class = json.loads((tmp_path / "per_class.json").read_text())
    assert per_class["class_names"] == ["cat", "dog", "fox", "owl"]


def test_bad_folder_stops_the_run_in_build(tmp_path):
    root = tmp_path / "bad"
    path, _ = _empty_class(root)
    with pytest.raises(DatasetFormatError, match=str(path)):
        build(compose_cfg(image_folder_overrides(root), tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_fmnist_written_as_a_folder_is_the_same_data(fmnist_dir, tmp_path):
    """scripts/fmnist_to_image_folder.py: same train / val / test images as data=fmnist_lt, same eval tensors."""
    import importlib.util
    from pathlib import Path

    from ecl_lightning.data import FashionMNISTLTDataModule

    script = Path(__file__).parents[2] / "scripts" / "fmnist_to_image_folder.py"
    spec = importlib.util.spec_from_file_location("fmnist_to_image_folder", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "folder"
    module.main(
        [str(out), "--data-dir", str(fmnist_dir), "--n-max", "40", "--imbalance-factor", "10", "--val-per-class", "5"]
    )
    fmnist = FashionMNISTLTDataModule(str(fmnist_dir), n_max=40, imbalance_factor=10, val_per_class=5, num_workers=0)
    fmnist.setup()
    folder = ImageFolderDataModule(
        str(out), channels=1, image_size=28, mean=[0.2860], std=[0.3530], augment=False, num_workers=0
    )
    by_name = dict(zip(folder.class_names, folder.class_counts, strict=True))
    assert [by_name[name] for name in module.CLASS_NAMES] == fmnist.class_counts
    assert len(folder.val_set) == len(fmnist.val_set) and len(folder.test_set) == len(fmnist.test_set)
    for i in (0, 7):
        file = folder.test_set.file(i)
        assert torch.equal(folder.test_set[i][0], fmnist.test_set[int(Path(file).stem)][0])
