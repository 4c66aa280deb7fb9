"""bench/bench_augment_libs.py stays runnable: one tiny pass of each pipeline (`--smoke`); needs Kornia (`bench`)."""

from __future__ import annotations

import pytest

pytest.importorskip("kornia", minversion="0.9")

from helpers import load_bench as load  # noqa: E402
from helpers import table_rows  # noqa: E402


def test_bench_augment_libs_smoke(capsys):
    rows = load("bench_augment_libs").main(["--smoke"])
    assert [row[0] for row in rows] == ["fmnist", "cifar", "simclr224"]
    table = table_rows(capsys.readouterr().out)
    assert set(table) == {"fmnist", "cifar", "simclr224"}
    for _shape, ours, kornia, ratio in table.values():
        assert float(ours) > 0 and float(kornia) > 0 and float(ratio) > 0


def test_bench_augment_libs_refuses_unknown_pipeline():
    with pytest.raises(SystemExit, match="unknown pipeline"):
        load("bench_augment_libs").main(["--smoke", "--pipelines", "fmnist,imagenet"])
