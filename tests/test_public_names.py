"""One meaning per public name: no two modules of the package define a public function or class of the same name
(two `check_trainer`s with different signatures were easy to confuse), but for the allowed ones below."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import ecl_lightning

# Same name, same meaning: each entry point's Hydra `main`, and the batched GPU mirror of the CPU Cutout.
ALLOWED = {"main", "Cutout"}


def test_no_public_name_is_defined_twice():
    root = Path(ecl_lightning.__file__).parent
    where = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(root)))
    twice = {name: files for name, files in where.items() if len(files) > 1 and name not in ALLOWED}
    assert not twice, twice
