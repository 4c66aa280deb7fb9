"""Every DataModule of the package gives the interface training and evaluation use (data/interface.py)."""

import copy
import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path

import lightning as L
import pytest
from omegaconf import OmegaConf

import ecl_lightning.data.datamodules as datamodules
from datagen import write_image_folder
from ecl_lightning.data import (
    CIFARLTDataModule,
    FashionMNISTLTDataModule,
    ImageFolderDataModule,
    ImageNetLTDataModule,
    INaturalist2018DataModule,
    InputSpec,
    LongTailData,
    PlacesLTDataModule,
)

CONF_DATA = Path(__file__).parents[2] / "conf" / "data"
LOADERS = {"batch_size": 4, "eval_batch_size": 8, "num_workers": 0}
SPLIT_FILES = {"num_classes": 5, "image_size": 32, "resize_size": 36, **LOADERS}


@pytest.fixture
def built(fmnist_dir, cifar10_dir, cifar100_dir, imagenet_lt_tree, places_lt_tree, inat2018_tree, tmp_path):
    """One instance of every concrete DataModule, on the tiny datasets of conftest.py, set up."""
    tiny = {"n_max": 20, "imbalance_factor": 10, **LOADERS}
    split = {t: (str(t / "splits"), str(t / "images")) for t in (imagenet_lt_tree, places_lt_tree, inat2018_tree)}
    modules = [
        FashionMNISTLTDataModule(str(fmnist_dir), val_per_class=5, **tiny),
        CIFARLTDataModule(str(cifar10_dir), **tiny),
        CIFARLTDataModule(str(cifar100_dir), num_classes=100, **tiny),
        ImageNetLTDataModule(*split[imagenet_lt_tree], **SPLIT_FILES),
        PlacesLTDataModule(*split[places_lt_tree], **SPLIT_FILES),
        INaturalist2018DataModule(*split[inat2018_tree], **SPLIT_FILES),
        ImageFolderDataModule(str(write_image_folder(tmp_path / "f", [8, 6, 5, 4])), val_per_class=2, **LOADERS),
    ]
    for dm in modules:
        dm.setup()
    return modules


def concrete_datamodules() -> set[type]:
    """Every LightningDataModule class defined in ecl_lightning.data.datamodules that is no other's base."""
    found = set()
    for info in pkgutil.iter_modules(datamodules.__path__, datamodules.__name__ + "."):
        module = importlib.import_module(info.name)
        found |= {c for _, c in inspect.getmembers(module, inspect.isclass) if issubclass(c, L.LightningDataModule)}
    found = {c for c in found if c.__module__.startswith(datamodules.__name__)}
    return {c for c in found if not any(o is not c and issubclass(o, c) for o in found)}


def test_every_datamodule_satisfies_the_protocol(built):
    for dm in built:
        assert isinstance(dm, LongTailData), type(dm).__name__
        assert len(dm.class_counts) == dm.num_classes and dm.in_chans in (1, 3) and isinstance(dm.has_val, bool)
        assert isinstance(dm.input_spec(), InputSpec) and dm.input_spec().channels == dm.in_chans
        assert len(dm.transforms(True)) == 3 and len(dm.transforms(False)) == 3
        assert json.loads(json.dumps(dm.subset_info()))["dataset"] == dm.name
        assert (dm.val_set is not None) == dm.has_val and len(dm.test_set) > 0
        dm.check()  # present: no error


def test_the_tested_datamodules_are_all_of_them(built):
    """A new DataModule (a new conf/data file or class) must be added to `built` above."""
    assert {type(dm) for dm in built} == concrete_datamodules()
    targets = {OmegaConf.load(f)._target_.rsplit(".", 1)[-1] for f in CONF_DATA.glob("*.yaml")}
    assert targets == {c.__name__ for c in concrete_datamodules()}


@pytest.mark.parametrize("member", ["transforms", "input_spec", "subset_info", "check"])
def test_the_protocol_refuses_a_datamodule_without_a_member(built, member):
    incomplete = copy.copy(built[0])
    setattr(incomplete, member, None)  # as a DataModule that does not define it
    assert isinstance(built[0], LongTailData) and not isinstance(incomplete, LongTailData)


def test_every_member_of_the_protocol_is_documented():
    source = inspect.getsource(LongTailData)
    for name in LongTailData.__annotations__:  # data members: a docstring on the line after the annotation
        assert re.search(rf'^    {name}: [^\n]+\n    """', source, re.MULTILINE), name
    methods = [
        n for n, v in vars(LongTailData).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))
    ]
    for name in methods:
        assert inspect.getdoc(getattr(LongTailData, name)), name
    used = {"check", "class_counts", "subset_info", "input_spec", "transforms", "has_val", "in_chans", "num_classes"}
    assert used <= {*LongTailData.__annotations__, *methods}
