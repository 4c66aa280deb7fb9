"""Packaging habits: every package and config group ships in the wheel, the version is written once."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import tomllib

import ecl_lightning

ROOT = Path(__file__).parents[1]


def test_every_config_folder_is_a_declared_package():
    """A config group folder missing from pyproject's list still ships today, with a setuptools warning that says
    a later setuptools will drop it; a new group (conf/recipe, say) must be added to the list."""
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        "ecl_lightning.conf." + ".".join(d.relative_to(ROOT / "conf").parts)
        for d in (ROOT / "conf").rglob("*")
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.yaml"))
    }
    assert folders - declared == set()


def test_every_python_package_is_declared():
    """The packages list is explicit: a sub-package missing from it is missing from the wheel (its imports fail only
    in a non-editable install)."""
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    src = ROOT / "src"
    packages = {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}
    assert packages - declared == set()


def test_the_version_is_written_in_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]  # from ecl_lightning.__version__
    assert version("ecl_lightning") == ecl_lightning.__version__
    assert "cff-version" in (ROOT / "CITATION.cff").read_text()
    assert f"version: {ecl_lightning.__version__}" in (ROOT / "CITATION.cff").read_text()
    assert f"## {ecl_lightning.__version__}" in (ROOT / "CHANGELOG.md").read_text()
