"""ImageNet-LT, Places-LT and iNat 2018 DataModules on tiny JPEG trees written in the real layouts."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from datagen import SPLIT_TREE_TRAIN, write_split_tree
from ecl_lightning.data import (
    DatasetFormatError,
    ImageNetLTDataModule,
    INaturalist2018DataModule,
    PlacesLTDataModule,
    imagefolder_transforms,
    parse_split_json,
    parse_split_txt,
)
from ecl_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, INAT_MEAN, INAT_STD

MODULES = {"imagenet_lt": ImageNetLTDataModule, "places_lt": PlacesLTDataModule, "inat2018": INaturalist2018DataModule}


def make(dataset: str, tree: Path, split_dir: Path | None = None, **kw):
    kw = {"num_classes": 5, "batch_size": 4, "eval_batch_size": 8, "num_workers": 0, "image_size": 32} | kw
    kw.setdefault("resize_size", 36)
    return MODULES[dataset](str(split_dir or tree / "splits"), str(tree / "images"), **kw)


@pytest.fixture
def trees(imagenet_lt_tree, places_lt_tree, inat2018_tree) -> dict[str, Path]:
    return {"imagenet_lt": imagenet_lt_tree, "places_lt": places_lt_tree, "inat2018": inat2018_tree}


def split_lines(path: Path) -> list[tuple[str, int]]:
    return [(p, int(label)) for p, label in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.parametrize("dataset", list(MODULES))
def test_counts_batches_and_val_semantics(dataset, trees):
    dm = make(dataset, trees[dataset])
    dm.check()
    assert dm.class_counts == SPLIT_TREE_TRAIN  # counted from the train split file
    assert dm.in_chans == 3 and dm.num_classes == 5 and dm.has_val == (dataset != "inat2018")

    batches = list(dm.train_dataloader())
    assert len(batches) == sum(SPLIT_TREE_TRAIN) // 4  # 30 images, batch 4, drop_last: 7 full batches
    x1, x2, y = batches[0]
    assert x1.shape == x2.shape == (4, 3, 32, 32) and x1.dtype == torch.float32 and y.dtype == torch.int64
    assert not torch.equal(x1, x2)  # two independent augmentations
    seen = torch.cat([b[2] for b in batches])
    assert len(seen) == 28 and seen.max() < 5

    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)
    assert sum(len(b[1]) for b in dm.test_dataloader()) == 15  # 3 per class, nothing dropped
    val = dm.val_dataloader()
    if dm.has_val:
        assert sum(len(b[1]) for b in val) == 15
    else:
        assert val == []  # iNat: its val split is the test split

    info = json.loads(json.dumps(dm.subset_info()))
    assert info["dataset"] == dataset and info["class_counts"] == SPLIT_TREE_TRAIN
    assert info["num_images"]["train"] == 30 and Path(info["files"]["train"]).is_file()


def test_inat_test_split_reads_the_val_file(inat2018_tree):
    dm = make("inat2018", inat2018_tree)
    dm.setup()
    expected = split_lines(inat2018_tree / "splits" / "iNaturalist18_val.txt")
    assert list(zip(dm.test_set.files, dm.test_set.targets.tolist(), strict=True)) == expected


def test_inat_json_and_txt_give_the_same_samples(inat2018_tree, tmp_path):
    txt, jsn = make("inat2018", inat2018_tree, split_format="txt"), make("inat2018", inat2018_tree, split_format="json")
    txt.setup(), jsn.setup()
    assert txt.format == "txt" and jsn.format == "json"
    for split in ("train_set", "test_set"):
        a, b = getattr(txt, split), getattr(jsn, split)
        assert a.files == b.files and torch.equal(a.targets, b.targets)
    # auto: json when only the json files are there
    for name in ("train2018.json", "val2018.json"):
        shutil.copy(inat2018_tree / "splits" / name, tmp_path / name)
    auto = make("inat2018", inat2018_tree, split_dir=tmp_path)
    assert auto.split_files()[0] == "json" and auto.class_counts == SPLIT_TREE_TRAIN


def test_setup_is_idempotent(imagenet_lt_tree):
    dm = make("imagenet_lt", imagenet_lt_tree)
    dm.setup("fit")
    train_set = dm.train_set
    dm.setup("test")
    assert dm.train_set is train_set


def test_classes_without_training_images_are_counted_and_logged(imagenet_lt_tree, caplog):
    dm = make("imagenet_lt", imagenet_lt_tree, num_classes=7)
    with caplog.at_level("WARNING", logger="ecl_lightning"):
        assert dm.class_counts == [*SPLIT_TREE_TRAIN, 0, 0]
    assert "2 of 7 classes have no training image (first: [5, 6])" in caplog.text


def test_batch_larger_than_train_split_is_refused(imagenet_lt_tree):
    with pytest.raises(ValueError, match="data.batch_size=64"):
        make("imagenet_lt", imagenet_lt_tree, batch_size=64).train_dataloader()


def test_bad_options_are_refused_at_construction(imagenet_lt_tree):
    with pytest.raises(ValueError, match="split_format"):
        make("imagenet_lt", imagenet_lt_tree, split_format="json")
    with pytest.raises(ValueError, match="resize_size"):
        make("imagenet_lt", imagenet_lt_tree, image_size=32, resize_size=30)


def test_default_num_classes():
    assert ImageNetLTDataModule("x").num_classes == 1000 and PlacesLTDataModule("x").num_classes == 365
    assert INaturalist2018DataModule("x").num_classes == 8142


def test_parsers_read_paths_and_labels(inat2018_tree):
    splits = inat2018_tree / "splits"
    txt = parse_split_txt(splits / "iNaturalist18_train.txt", 5)
    jsn = parse_split_json(splits / "train2018.json", 5)
    assert txt.problems == [] and jsn.problems == []
    assert list(zip(txt.files, txt.labels, strict=True)) == split_lines(splits / "iNaturalist18_train.txt")
    assert jsn.files == txt.files and jsn.labels == txt.labels
    assert txt.keys == list(range(1, 31))  # line numbers


# ---- transforms --------------------------------------------------------------------------------------------------
def constant_image(rgb=(200, 100, 50), size=40) -> Image.Image:
    return Image.new("RGB", (size, size), rgb)


@pytest.mark.parametrize("mean, std", [(IMAGENET_MEAN, IMAGENET_STD), (INAT_MEAN, INAT_STD)])
def test_eval_transform_resizes_crops_and_normalises(mean, std):
    _, _, evaluate = imagefolder_transforms("randaugment", 32, 36, mean, std)
    out = evaluate(constant_image(size=50))
    assert out.shape == (3, 32, 32) and type(out) is torch.Tensor
    expected = (torch.tensor([200, 100, 50]) / 255 - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(out[:, 16, 16], expected, atol=1e-5, rtol=0)


def test_datamodules_use_their_statistics_and_recipes(trees):
    inat, imnet, places = (make(d, trees[d]) for d in ("inat2018", "imagenet_lt", "places_lt"))
    assert inat.mean == INAT_MEAN and imnet.mean == IMAGENET_MEAN and places.std == IMAGENET_STD
    inat.setup(), places.setup()
    x_inat = inat.test_set.transform(constant_image())
    x_imnet = imagefolder_transforms("randaugment", 32, 36)[2](constant_image())
    assert not torch.allclose(x_inat, x_imnet)
    assert places.recipe == "simclr" and places.train_set.transform.view1 is places.train_set.transform.view2
    assert imnet.recipe == "randaugment"
    view1, view2, _ = imagefolder_transforms("randaugment", 32, 36)
    assert "RandAugment" in repr(view1) and "GaussianBlur" in repr(view2) and "RandAugment" not in repr(view2)


def test_no_augment_gives_the_eval_transform_for_every_view():
    view1, view2, evaluate = imagefolder_transforms("simclr", 32, 36, augment=False)
    assert view1 is view2 is evaluate


# ---- images that cannot be decoded ------------------------------------------------------------------------------
@pytest.fixture
def corrupt_tree(tmp_path) -> tuple[Path, str]:
    """A private ImageNet-LT tree whose first train image is garbage bytes (returns tree, relative path)."""
    tree = write_split_tree(tmp_path / "tree", "imagenet_lt", 5, SPLIT_TREE_TRAIN, 3)
    rel = split_lines(tree / "splits" / "ImageNet_LT_train.txt")[0][0]
    (tree / "images" / rel).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return tree, rel


def test_corrupt_jpeg_error_names_the_file(corrupt_tree):
    tree, rel = corrupt_tree
    dm = make("imagenet_lt", tree, check_headers=False)
    dm.setup()  # neither check_headers nor verify_images: only file existence is checked
    with pytest.raises(DatasetFormatError, match="cannot decode image") as err:
        dm.train_set[0]
    assert str(tree / "images" / rel) in str(err.value)


def test_verify_images_reports_corrupt_files_before_training(corrupt_tree):
    tree, rel = corrupt_tree
    with pytest.raises(DatasetFormatError) as err:
        make("imagenet_lt", tree, verify_images=True).setup()
    message = str(err.value)
    train_file = tree / "splits" / "ImageNet_LT_train.txt"
    assert f"{train_file}: 1 bad line of 30:" in message
    assert f"{train_file}:1: cannot decode image {rel}" in message


def test_header_check_reports_corrupt_and_cut_short_files_by_default(corrupt_tree):
    tree, rel = corrupt_tree
    lines = split_lines(tree / "splits" / "ImageNet_LT_train.txt")
    cut = tree / "images" / lines[1][0]
    cut.write_bytes(cut.read_bytes()[:-200])  # a copy cut short: header intact, no end marker
    with pytest.raises(DatasetFormatError) as err:
        make("imagenet_lt", tree).setup()  # the defaults: check_headers=True, verify_images=False
    message = str(err.value)
    train_file = tree / "splits" / "ImageNet_LT_train.txt"
    assert f"{train_file}: 2 bad lines of 30:" in message
    assert f"{train_file}:1: not a readable image {rel}: " in message, message
    assert f"{train_file}:2: not a readable image {lines[1][0]}: OSError: image file is truncated" in message, message


def test_header_check_decodes_a_file_with_data_after_its_end_marker(tmp_path):
    tree = write_split_tree(tmp_path / "tree", "imagenet_lt", 5, SPLIT_TREE_TRAIN, 3)
    path = tree / "images" / split_lines(tree / "splits" / "ImageNet_LT_train.txt")[0][0]
    path.write_bytes(path.read_bytes() + b"\0" * 4096)  # trailing data, as some cameras write: a usable image
    dm = make("imagenet_lt", tree)
    dm.setup()
    assert len(dm.train_set) == 30
