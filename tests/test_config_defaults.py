"""One source for each default: conf/model/ecl.yaml and the dataclasses of config.py must say the same."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ecl_lightning.config import EvalConfig, LossConfig, NetConfig, OptimConfig, ScheduleConfig

ECL_YAML = Path(__file__).parents[1] / "conf" / "model" / "ecl.yaml"


@pytest.mark.parametrize(
    "group, cls",
    [("net", NetConfig), ("loss", LossConfig), ("optim", OptimConfig), ("schedule", ScheduleConfig),
     ("eval", EvalConfig)],
)  # fmt: skip
def test_yaml_defaults_equal_the_dataclass_defaults(group, cls):
    yaml = OmegaConf.to_container(OmegaConf.load(ECL_YAML)[group])
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(yaml) == set(fields), f"model.{group}: keys only in the YAML or only in {cls.__name__}"
    defaults = dataclasses.asdict(cls())
    for key, value in yaml.items():
        assert value == defaults[key], (
            f"model.{group}.{key}: {value!r} in ecl.yaml, {defaults[key]!r} in {cls.__name__}"
        )
