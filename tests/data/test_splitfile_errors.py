"""Every kind of bad split file ends in one error, before training, naming the file, the count and the lines."""

import json
import shutil
from pathlib import Path

import pytest

from ecl_lightning.data import (
    DatasetFormatError,
    DatasetNotFoundError,
    ImageNetLTDataModule,
    INaturalist2018DataModule,
)

SPLITS = ("train", "val", "test")


@pytest.fixture
def splits(imagenet_lt_tree, tmp_path) -> Path:
    """A writable copy of the ImageNet-LT split files (the images stay in the session tree)."""
    for s in SPLITS:
        shutil.copy(imagenet_lt_tree / "splits" / f"ImageNet_LT_{s}.txt", tmp_path)
    return tmp_path


def make(tree: Path, split_dir: Path, **kw) -> ImageNetLTDataModule:
    kw = {"num_classes": 5, "batch_size": 4, "num_workers": 0, "image_size": 32, "resize_size": 36} | kw
    return ImageNetLTDataModule(str(split_dir), str(tree / "images"), **kw)


def edit(path: Path, changes: dict[int, str], append: list[str] = ()) -> list[str]:
    """Replace lines (1-based) and append lines; returns the original lines."""
    lines = path.read_text().splitlines()
    new = [changes.get(i, line) for i, line in enumerate(lines, start=1)] + list(append)
    path.write_text("\n".join(new) + "\n")
    return lines


def lines_path(path: Path, lineno: int) -> str:
    """The image path on a line (1-based) of a split file."""
    return path.read_text().splitlines()[lineno - 1].split()[0]


def error_of(tree: Path, split_dir: Path, **kw) -> str:
    dm = make(tree, split_dir, **kw)
    dm.check()  # the cheap check passes: root and files exist
    with pytest.raises(DatasetFormatError) as err:
        dm.setup()
    return str(err.value)


def test_unparseable_lines(imagenet_lt_tree, splits):
    train = splits / "ImageNet_LT_train.txt"
    lines = edit(
        train, {2: lines_path(train, 2), 4: lines_path(train, 4) + " 1 extra", 7: lines_path(train, 7) + " one"}
    )
    message = error_of(imagenet_lt_tree, splits)
    assert f"{train}: 3 bad lines of {len(lines)}:" in message
    assert f"{train}:2: expected 'path label'" in message
    assert f"{train}:4: expected 'path label'" in message
    assert f"{train}:7: label 'one' is not an integer" in message
    assert "ImageNet_LT_val.txt" not in message  # the good splits are not mentioned


def test_label_out_of_range(imagenet_lt_tree, splits):
    test = splits / "ImageNet_LT_test.txt"
    edit(test, {3: f"{lines_path(test, 3)} 5", 9: f"{lines_path(test, 9)} -1"})
    message = error_of(imagenet_lt_tree, splits)
    assert f"{test}: 2 bad lines of 15:" in message
    assert f"{test}:3: label 5 out of range [0, 5)" in message and f"{test}:9: label -1 out of range" in message


def test_duplicates_within_a_split(imagenet_lt_tree, splits):
    val = splits / "ImageNet_LT_val.txt"
    lines = val.read_text().splitlines()
    other_label = (int(lines[1].split()[1]) + 1) % 5
    edit(val, {}, append=[lines[0], f"./{lines_path(val, 2)} {other_label}"])
    message = error_of(imagenet_lt_tree, splits)
    assert f"{val}: 2 bad lines of 17:" in message
    assert f"{val}:16: duplicate of line 1" in message
    assert f"{val}:17: ./{lines_path(val, 2)} is also at line 2 with label" in message


def test_missing_image_files(imagenet_lt_tree, splits):
    train = splits / "ImageNet_LT_train.txt"
    path5 = lines_path(train, 5)
    gone = path5.replace(".JPEG", "_gone.JPEG")
    edit(train, {5: f"{gone} 0", 8: "train/n09999999/n09999999_1.JPEG 1"})  # a missing file, a missing folder
    message = error_of(imagenet_lt_tree, splits)
    assert f"{train}: 2 bad lines of 30:" in message
    assert f"{train}:5: image file not found: {imagenet_lt_tree / 'images' / gone}" in message
    assert f"{train}:8: image file not found" in message


def test_only_the_first_five_bad_lines_are_quoted_and_all_splits_are_reported(imagenet_lt_tree, splits):
    train, test = splits / "ImageNet_LT_train.txt", splits / "ImageNet_LT_test.txt"
    edit(train, {i: f"{lines_path(train, i)} 99" for i in range(3, 11)})
    edit(test, {1: "garbage"})
    message = error_of(imagenet_lt_tree, splits)
    assert f"{train}: 8 bad lines of 30; the first 5:" in message
    assert all(f"{train}:{i}: label 99" in message for i in range(3, 8))
    assert f"{train}:8:" not in message
    assert f"{test}: 1 bad line of 15:" in message and f"{test}:1: expected 'path label'" in message
    assert "data.image_root=" in message and "data.num_classes=5" in message


def test_empty_split(imagenet_lt_tree, splits):
    (splits / "ImageNet_LT_val.txt").write_text("\n  \n")
    message = error_of(imagenet_lt_tree, splits)
    assert f"{splits / 'ImageNet_LT_val.txt'}: the split is empty" in message


def test_missing_image_root_or_split_file(imagenet_lt_tree, splits, tmp_path):
    dm = ImageNetLTDataModule(str(splits), str(tmp_path / "nowhere"), num_classes=5)
    with pytest.raises(DatasetNotFoundError, match="data.image_root") as err:
        dm.check()
    assert str(tmp_path / "nowhere") in str(err.value) and "ILSVRC-2012" in str(err.value)

    (splits / "ImageNet_LT_test.txt").unlink()
    dm = make(imagenet_lt_tree, splits)
    with pytest.raises(DatasetNotFoundError, match="ImageNet_LT_test.txt") as err:
        dm.setup()
    assert str(splits) in str(err.value) and "ImageNet_LT_train.txt" not in str(err.value).split("missing")[1][:40]


def test_inat_missing_both_formats_lists_both(inat2018_tree, tmp_path):
    dm = INaturalist2018DataModule(str(tmp_path), str(inat2018_tree / "images"), num_classes=5)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.check()
    assert "iNaturalist18_train.txt" in str(err.value) and "train2018.json" in str(err.value)


def test_inat_json_bad_entries(inat2018_tree, tmp_path):
    for name in ("train2018.json", "val2018.json"):
        shutil.copy(inat2018_tree / "splits" / name, tmp_path / name)
    train = tmp_path / "train2018.json"
    data = json.loads(train.read_text())
    data["annotations"][2]["category_id"] = 7  # the annotation of images[2]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != data["images"][4]["id"]]
    data["images"][6]["file_name"] = "train_val2018/Plantae/0/none.jpg"
    train.write_text(json.dumps(data))
    dm = INaturalist2018DataModule(str(tmp_path), str(inat2018_tree / "images"), num_classes=5, num_workers=0)
    with pytest.raises(DatasetFormatError) as err:
        dm.setup()
    message = str(err.value)
    assert f"{train}: 3 bad entries of 30:" in message
    assert f"{train}:images[2]: label 7 out of range" in message
    assert f"{train}:images[4]: image id" in message and "has 0 annotations" in message
    assert f"{train}:images[6]: image file not found" in message


def test_inat_json_not_json(inat2018_tree, tmp_path):
    (tmp_path / "train2018.json").write_text("{not json")
    shutil.copy(inat2018_tree / "splits" / "val2018.json", tmp_path / "val2018.json")
    dm = INaturalist2018DataModule(str(tmp_path), str(inat2018_tree / "images"), num_classes=5, split_format="json")
    with pytest.raises(DatasetFormatError, match=r"train2018\.json:1: not a readable json file"):
        dm.setup()
