"""The options every DataModule takes are declared once (config.DataOptions and its family subclasses); each
DataModule's __init__ states only its own parameters, and validate.py checks `data.*` against both."""

import dataclasses
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_datamodule_interface import concrete_datamodules

from ecl_lightning.config import ConfigError, DataOptions, InMemoryOptions, SplitFileOptions
from ecl_lightning.data import BaseDataModule, CIFARLTDataModule, FashionMNISTLTDataModule, ImageNetLTDataModule
from ecl_lightning.validate import check_data

CONF_DATA = Path(__file__).parents[2] / "conf" / "data"


def own_parameters(cls: type) -> set[str]:
    """The named parameters of the __init__ a class defines itself (none when it inherits its __init__)."""
    if "__init__" not in vars(cls):
        return set()
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}


@pytest.mark.parametrize("cls", sorted(concrete_datamodules(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_a_datamodule_states_no_shared_option(cls):
    assert issubclass(cls, BaseDataModule)
    shared = {f.name for f in dataclasses.fields(cls.options_type)}
    for klass in cls.__mro__:
        assert not own_parameters(klass) & shared, klass.__name__


@pytest.mark.parametrize("path", sorted(CONF_DATA.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_packaged_data_key_is_a_config_key(path):
    values = OmegaConf.to_container(OmegaConf.load(path))
    cls = {c.__name__: c for c in concrete_datamodules()}[values.pop("_target_").rsplit(".", 1)[-1]]
    assert set(values) <= set(cls.config_keys())


def test_the_options_reach_the_datamodule_with_their_defaults(cifar10_dir):
    dm = CIFARLTDataModule(str(cifar10_dir), batch_size=4, n_max=20, imbalance_factor=10)
    assert (dm.batch_size, dm.eval_batch_size, dm.num_workers, dm.n_max, dm.imbalance_factor) == (4, 4, 2, 20, 10.0)
    assert isinstance(dm.imbalance_factor, float) and dm.gpu_augment is False and dm.val_per_class == 0
    assert FashionMNISTLTDataModule("unused").val_per_class == 100
    split = ImageNetLTDataModule("unused")
    assert split.num_workers == SplitFileOptions.num_workers == 8 and split.eval_batch_size == DataOptions.batch_size
    assert issubclass(InMemoryOptions, DataOptions)


def test_an_unknown_python_option_is_refused_naming_the_class():
    with pytest.raises(TypeError, match=r"CIFARLTDataModule got unknown option\(s\) \['val_per_class'\]"):
        CIFARLTDataModule("unused", val_per_class=5)


def test_an_unknown_data_key_lists_own_and_shared_keys():
    cfg = OmegaConf.create({"data": {"_target_": "ecl_lightning.data.FashionMNISTLTDataModule", "batchsize": 8}})
    valid = sorted([*(f.name for f in dataclasses.fields(InMemoryOptions)), "data_dir", "val_per_class"])
    with pytest.raises(ConfigError) as err:
        check_data(cfg)
    assert str(err.value) == f"unknown key data.batchsize for FashionMNISTLTDataModule; valid keys: {valid}"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("gpu_augment", "yes", "data.gpu_augment='yes' must be true or false"),  # an option: typed by the dataclass
        ("val_per_class", 1.5, "data.val_per_class=1.5 must be an integer"),  # own: typed by the signature
        ("n_max", None, None),  # an option that may be null
    ],
)
def test_own_and_shared_keys_are_typed(key, value, message):
    cfg = OmegaConf.create({"data": {"_target_": "ecl_lightning.data.FashionMNISTLTDataModule", key: value}})
    if message is None:
        check_data(cfg)
        return
    with pytest.raises(ConfigError) as err:
        check_data(cfg)
    assert str(err.value) == message
