"""The benchmark scripts stay runnable: one tiny pass each (the figures themselves come from `make bench`)."""

from __future__ import annotations

import pytest

from helpers import load_bench as load
from helpers import table_rows


def test_bench_step_compares_lightning_and_bare_loop(capsys):
    bench = load("bench_step")
    bench.main(["--experiment", "fmnist_lt", "--batch", "16", "--warmup", "1", "--steps", "2", "--repeats", "1",
                "--variants", "lightning,bare_nchw"])  # fmt: skip
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {"lightning", "bare_nchw"}
    for step_ms, images_s, _ratio, memory in rows.values():
        assert float(step_ms) > 0 and float(images_s) > 0 and float(memory) > 0.05  # a process holds > 50 MiB
    assert rows["lightning"][2] == "1.00x"


def test_bench_step_refuses_unknown_variant():
    with pytest.raises(SystemExit, match="unknown variant"):
        load("bench_step").main(["--variants", "bare,turbo"])


def test_bench_data_measures_both_pipelines(capsys):
    bench = load("bench_data")
    bench.main(["--datasets", "cifar10_lt", "--workers", "0", "--batch", "32", "--batches", "2", "--warmup", "1",
                "--repeats", "1", "--gpu-augment", "--n-max", "200"])  # fmt: skip
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| cifar10_lt")]
    assert len(lines) == 2 and "views in the workers" in lines[0] and "views on cpu" in lines[1]
    assert all(float(line.strip("|").split("|")[-1]) > 0 for line in lines)


def test_bench_data_measures_the_split_file_pipelines(tmp_path, capsys):
    bench = load("bench_data")
    bench.main(["--datasets", "imagenet_lt", "--jpegs", "16", "--jpeg-size", "64x48", "--split-batch", "4",
                "--workers", "0", "--batches", "2", "--warmup", "1", "--repeats", "1",
                "--jpeg-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    lines = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| imagenet_lt")]
    rows = {cells[3].strip(): float(cells[4]) for cells in lines}
    assert all(rate > 0 for rate in rows.values())
    assert {
        "read only: a data.decode=bytes worker",
        "decode only: PIL",
        "decode only: torchvision.io (cpu)",
        "PIL decode + two views in the workers",
        "PIL decode + eval crop in the workers",
        "bytes: read in the workers, batched decode + two views on cpu",
        "bytes: read in the workers, batched decode + eval crop on cpu",
    } == set(rows)
    assert all("generated 64x48 q90" in cells[1] for cells in lines)


def test_bench_image_check_times_both_checks(tmp_path, capsys):
    load("bench_image_check").main(["--files", "4", "--dir", str(tmp_path), "--repeats", "1", "--workers", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| header", "| decode"))]
    assert len(rows) == 3 and all(float(row.strip("|").split("|")[-1]) > 0 for row in rows)
