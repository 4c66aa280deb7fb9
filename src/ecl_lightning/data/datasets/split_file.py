"""Split files of the image-folder benchmarks: parse `path label` lines or COCO-style json, find every bad entry.

Pure functions: each returns what it found (entries and problems), so the DataModule can gather all problems of all
splits and raise one error before training starts.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from ecl_lightning.data.datasets.image_files import load_image, undecodable
from ecl_lightning.data.errors import DatasetFormatError

MAX_SHOWN = 5  # bad lines quoted in an error message, per split file


class Problem(NamedTuple):
    """One bad entry: `key` orders problems (line number or entry index), `where` is shown after the file name."""

    key: int
    where: str
    reason: str


@dataclass
class SplitEntries:
    """The usable entries of one split file (paths relative to the image root, labels) and its problems."""

    path: Path
    files: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)  # line number (txt) or image index (json) of each entry
    problems: list[Problem] = field(default_factory=list)
    where_format: str = "{}"  # how a key is shown: "12" for line 12, "images[3]" for json

    def add(self, key: int, file: str, label: int) -> None:
        self.keys.append(key)
        self.files.append(file)
        self.labels.append(label)

    def flag(self, key: int, reason: str) -> None:
        self.problems.append(Problem(key, self.where_format.format(key), reason))

    def drop(self, positions: Sequence[int], reasons: Sequence[str]) -> None:
        """Move the entries at `positions` to the problems, each with its reason."""
        for pos, reason in zip(positions, reasons, strict=True):
            self.flag(self.keys[pos], reason)
        gone = set(positions)
        keep = [i for i in range(len(self.files)) if i not in gone]
        self.files = [self.files[i] for i in keep]
        self.labels = [self.labels[i] for i in keep]
        self.keys = [self.keys[i] for i in keep]


def _check_label(label: int, num_classes: int) -> str | None:
    if not 0 <= label < num_classes:
        return f"label {label} out of range [0, {num_classes}) (data.num_classes={num_classes})"
    return None


def _check_duplicate(
    entries: SplitEntries, seen: dict[str, tuple[str, int]], key: int, file: str, label: int
) -> str | None:
    """Same image twice in one split (normalised path); remembers the first place it was seen."""
    norm = posixpath.normpath(file)
    if norm in seen:
        first, first_label = seen[norm]
        if first_label == label:
            return f"duplicate of {first}: {file}"
        return f"{file} is also at {first} with label {first_label}"
    seen[norm] = (("line " if entries.where_format == "{}" else "") + entries.where_format.format(key), label)
    return None


def parse_split_txt(path: str | Path, num_classes: int) -> SplitEntries:
    """Read an OLTR split file (`relative/path.JPEG label` per line; blank lines skipped), flagging bad lines."""
    entries = SplitEntries(Path(path))
    seen: dict[str, tuple[str, int]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                shown = line if len(line) <= 80 else line[:77] + "..."
                entries.flag(lineno, f"expected 'path label', got {shown!r}")
                continue
            file, label_text = parts
            try:
                label = int(label_text)
            except ValueError:
                entries.flag(lineno, f"label {label_text!r} is not an integer")
                continue
            reason = _check_label(label, num_classes) or _check_duplicate(entries, seen, lineno, file, label)
            if reason:
                entries.flag(lineno, reason)
            else:
                entries.add(lineno, file, label)
    return entries


def parse_split_json(path: str | Path, num_classes: int) -> SplitEntries:
    """Read an iNaturalist json (`images` [{id, file_name}], `annotations` [{image_id, category_id}]).

    Problems are located as `images[i]` (or `annotations[j]`, keyed after the images) instead of line numbers.
    """
    entries = SplitEntries(Path(path), where_format="images[{}]")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        entries.problems.append(Problem(0, "1", f"not a readable json file ({err})"))
        return entries
    images = data.get("images") if isinstance(data, dict) else None
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(images, list) or not isinstance(annotations, list):
        entries.problems.append(Problem(0, "1", "expected a json object with 'images' and 'annotations' lists"))
        return entries

    labels_of: dict[object, list[int]] = {}
    for j, ann in enumerate(annotations):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        category = ann.get("category_id") if isinstance(ann, dict) else None
        if image_id is None or not isinstance(category, int) or isinstance(category, bool):
            reason = f"expected {{'image_id': ..., 'category_id': <int>}}, got {str(ann)[:80]}"
            entries.problems.append(Problem(len(images) + j, f"annotations[{j}]", reason))
            continue
        labels_of.setdefault(image_id, []).append(category)

    seen: dict[str, tuple[str, int]] = {}
    for i, image in enumerate(images):
        image_id = image.get("id") if isinstance(image, dict) else None
        file = image.get("file_name") if isinstance(image, dict) else None
        if image_id is None or not isinstance(file, str) or not file:
            entries.flag(i, f"expected {{'id': ..., 'file_name': <str>}}, got {str(image)[:80]}")
            continue
        labels = labels_of.get(image_id, [])
        if len(set(labels)) != 1:
            entries.flag(i, f"image id {image_id} ({file}) has {len(labels)} annotations, expected one category")
            continue
        reason = _check_label(labels[0], num_classes) or _check_duplicate(entries, seen, i, file, labels[0])
        if reason:
            entries.flag(i, reason)
        else:
            entries.add(i, file, labels[0])
    return entries


def missing_files(root: str | Path, files: Sequence[str]) -> list[int]:
    """Positions of `files` (relative to root) that are not existing files; one os.scandir per directory."""
    listed: dict[str, set[str]] = {}
    missing = []
    for i, rel in enumerate(files):
        directory, name = os.path.split(os.path.join(root, rel))
        names = listed.get(directory)
        if names is None:
            try:
                with os.scandir(directory) as it:
                    names = {e.name for e in it if e.is_file()}
            except OSError:  # no such directory, not a directory, no permission
                names = set()
            listed[directory] = names
        if name not in names:
            missing.append(i)
    return missing


def undecodable_files(root: str | Path, files: Sequence[str], workers: int = 1) -> list[tuple[int, str]]:
    """(position, error) of each file that PIL cannot decode as RGB (a full decode per file)."""
    return [(i, f"cannot decode image {files[i]}: {reason}") for i, reason in undecodable(root, files, 3, workers)]


# How far from its end a complete file has its end marker (JPEG EOI, PNG IEND chunk); a few cameras and editors
# append data after it, so a missing marker is only a suspicion, confirmed by decoding that one file.
TAIL_BYTES = 1024
END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


def header_problem(path: str | Path) -> str | None:
    """Why the image file at `path` is unusable, from its header and its last bytes, or None: PIL identifies the
    format and size (no decoding); a JPEG or PNG without its end marker (cut short) is decoded to be sure."""
    try:
        with Image.open(path) as img:
            marker = END_MARKERS.get(img.format or "")
            width, height = img.size
        if width < 1 or height < 1:
            return f"image of size {width}x{height}"
        if marker is not None:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - TAIL_BYTES))
                if marker not in f.read():
                    load_image(path, 3)  # raises when it is really cut short
    except DatasetFormatError as err:
        cause = err.__cause__
        return f"{type(cause).__name__}: {cause}"
    except Exception as err:  # PIL's UnidentifiedImageError, OSError, SyntaxError, DecompressionBombError...
        return f"{type(err).__name__}: {err}"
    return None


def unreadable_headers(root: str | Path, files: Sequence[str], workers: int = 1) -> list[tuple[int, str]]:
    """(position, error) of each file that is not an image or is cut short, by `header_problem` (a few KiB read per
    file, nothing decoded); threads, since the time goes into file system calls."""

    def check(i: int) -> tuple[int, str] | None:
        problem = header_problem(os.path.join(root, files[i]))
        return None if problem is None else (i, f"not a readable image {files[i]}: {problem}")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [r for r in pool.map(check, range(len(files))) if r is not None]


def describe_problems(entries: SplitEntries) -> str | None:
    """None for a usable split; else `<file>: N bad lines of M; the first 5:` and `<file>:<line>: reason` lines."""
    if not entries.problems:
        return None if entries.files else f"{entries.path}: the split is empty (no 'path label' entries)"
    problems = sorted(entries.problems, key=lambda p: p.key)
    unit = "lines" if entries.where_format == "{}" else "entries"
    shown = problems[:MAX_SHOWN]
    unit = unit if len(problems) > 1 else unit[:-1]
    head = f"{entries.path}: {len(problems)} bad {unit} of {len(entries.files) + len(problems)}"
    head += f"; the first {len(shown)}:" if len(problems) > len(shown) else ":"
    return "\n".join([head, *(f"  {entries.path}:{p.where}: {p.reason}" for p in shown)])
