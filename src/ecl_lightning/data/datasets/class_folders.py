"""Folders of class sub-folders (root/<class>/<image>, nested folders allowed): list the images, find every problem.

Pure functions: the DataModule gathers the problems of all its split folders and raises one error before training.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ecl_lightning.data.datasets.image_files import undecodable

log = logging.getLogger("ecl_lightning")


def image_extensions() -> frozenset[str]:
    """File extensions PIL can open (lower case, with the dot)."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass
class ClassFolders:
    """The image files under one folder of class sub-folders: class names (sorted) and, per class, paths relative
    to `root` (sorted); `others` are files skipped for their extension, `loose` files lying outside any class."""

    root: Path
    names: list[str]
    files: list[list[str]]
    others: list[str]
    loose: list[str]


def scan_class_folders(root: Path, all_files: bool = False) -> ClassFolders:
    """List root/<class>/**/<file>; hidden files and folders are skipped; `all_files` keeps every file as an image
    candidate (for `verify_images`), else only files with an image extension."""
    exts = image_extensions()
    names, files, others = [], [], []
    loose = sorted(e.name for e in os.scandir(root) if e.is_file() and not e.name.startswith("."))
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        found = []
        for dirpath, dirnames, filenames in os.walk(entry.path, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                (found if all_files or os.path.splitext(name)[1].lower() in exts else others).append(rel)
        names.append(entry.name)
        files.append(found)
    return ClassFolders(root, names, files, others, loose)


def class_folder_problems(scans: dict[str, ClassFolders], verify: bool, channels: int, workers: int) -> list[str]:
    """Every problem of the scanned split folders ({split: scan}, `train` first), one line per path: fewer than two
    classes, an empty class, a val/test class without training images; with `verify`, when nothing else is wrong,
    every file PIL cannot decode. Skipped and loose files are only logged."""
    problems: list[str] = []
    train = scans["train"]
    if len(train.names) < 2:
        problems.append(
            f"{train.root}: {len(train.names)} class folder(s) ({', '.join(train.names) or 'none'}); a classifier "
            "needs at least two: put each class's images in its own sub-folder, <root>/<class>/<image>"
        )
    for split, scan in scans.items():
        for name, files in zip(scan.names, scan.files, strict=True):
            if not files:
                problems.append(
                    f"{scan.root / name}: class folder with no image files; add images or remove the folder"
                )
            if split != "train" and name not in train.names:
                problems.append(
                    f"{scan.root / name}: class {name!r} of the {split} split has no folder in {train.root}; "
                    f"add its training images there or remove the folder"
                )
        if scan.others:
            log.warning(
                "%s: %d file(s) skipped, not images by their extension (first: %s); data.verify_images=true "
                "checks every file", scan.root, len(scan.others), scan.root / scan.others[0],
            )  # fmt: skip
        if scan.loose:
            log.warning(
                "%s: %d file(s) outside any class folder are ignored (first: %s)",
                scan.root, len(scan.loose), scan.root / scan.loose[0],
            )  # fmt: skip
    if verify and not problems:
        for scan in scans.values():
            everything = [f for files in scan.files for f in files]
            problems += [
                f"{scan.root / everything[i]}: not an image PIL can read ({reason}); remove or replace it"
                for i, reason in undecodable(scan.root, everything, channels, workers)
            ]
    return problems
