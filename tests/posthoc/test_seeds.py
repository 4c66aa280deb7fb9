"""`report --shifted`: several seeds' protocol=shifted evaluations as one table, mean ± std, with weights,
calibration and the plot."""

from __future__ import annotations

import json

import pytest
import yaml

from ecl_lightning.posthoc.seeds import layout, parse_rows
from ecl_lightning.report import main

PROFILES = ("backward2", "forward2", "uniform")  # stored out of order on purpose


def write_eval(root, num, run_name, acc_shift, temperature, selfsup=("selfsup@test",), settings=True):
    """A protocol=shifted job: accuracies 0.5 + shift (+0.1 forward, -0.1 backward), 2 aggregations x 2 corrections
    (each selfsup row 0.02 above mean_logits, plus 0.01 per row after the first); `selfsup=("selfsup",)` writes a run
    from before the rows named their tuning data, without `settings/...`."""
    metrics = {}
    for p in PROFILES:
        base = 0.5 + acc_shift + {"forward2": 0.1, "uniform": 0.0, "backward2": -0.1}[p]
        for agg, bonus in (("mean_logits", 0.0), *((row, 0.02 + 0.01 * i) for i, row in enumerate(selfsup))):
            for corr, fix in (("none", 0.0), ("known", 0.05)):
                metrics[f"shifted/{p}/{agg}/{corr}/acc"] = base + bonus + fix
                metrics[f"shifted/{p}/{agg}/{corr}/nll"] = 1.0  # not an accuracy row
        for row in selfsup:
            metrics[f"shifted/{p}/{row}/weight_expert1"] = 0.5 + acc_shift
            metrics[f"shifted/{p}/{row}/weight_expert2"] = 0.5 - acc_shift
        metrics[f"shifted/{p}/expert1/acc"] = 0.3
    for row in selfsup if settings else ():
        metrics.update({f"settings/{row}/epochs": 5.0, f"settings/{row}/lr": 0.1, f"settings/{row}/batch_size": 128.0})
    metrics.update({"calibration/mean_logits/temperature": temperature})
    for key, before, after in (
        ("ece", 0.04, 0.02),
        ("classwise_ece", 0.1, 0.08),
        ("nll", 0.7, 0.6),
        ("brier", 0.3, 0.29),
    ):
        metrics[f"calibration/mean_logits/{key}"] = before
        metrics[f"calibration/mean_logits/{key}_scaled"] = after
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    overrides = ["protocol=shifted", f"run_name={run_name}", f"ckpt_path=/ckpts/{run_name}{num}.ckpt"]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def two_methods(tmp_path):
    ecl, ncl = tmp_path / "ecl", tmp_path / "ncl"
    write_eval(ecl, 0, "ecl", 0.00, 1.2)
    write_eval(ecl, 1, "ecl", 0.02, 1.4)
    write_eval(ncl, 0, "ncl", -0.10, 1.0)
    return ecl, ncl


def test_table_pools_seeds_per_run_name_and_orders_profiles_forward_first(two_methods, tmp_path):
    plot = tmp_path / "acc.png"
    table = main([*map(str, two_methods), "--shifted", "--plot", str(plot)])
    header = next(line for line in table.splitlines() if line.startswith("| config"))
    assert header == "| config | aggregation | correction | seeds | forward2 | uniform | backward2 |"
    # ecl seeds: uniform 0.50 and 0.52 -> 51.00 ± 1.41; forward +10, backward -10; known correction +5
    assert "| run_name=ecl | mean_logits | none | 2 | 61.00 ± 1.41 | 51.00 ± 1.41 | 41.00 ± 1.41 |" in table
    assert "| run_name=ecl | selfsup@test | known | 2 | 68.00 ± 1.41 | 58.00 ± 1.41 | 48.00 ± 1.41 |" in table
    assert "| run_name=ncl | mean_logits | none | 1 | 50.00 | 40.00 | 30.00 |" in table
    rows = [
        line.split(" | ")[1:3]
        for line in table.split("What each selfsup row")[0].splitlines()
        if "run_name=ecl" in line
    ]
    assert rows == [
        ["mean_logits", "none"],
        ["mean_logits", "known"],
        ["selfsup@test", "none"],
        ["selfsup@test", "known"],
    ]
    assert (
        "expert1 |" not in header and "| expert1 |" not in table.split("What each selfsup row")[0]
    )  # experts: no rows
    # weights: expert1 0.5 and 0.52 -> 0.510 ± 0.014
    assert "| run_name=ecl | selfsup@test | forward2 | 0.510 ± 0.014 | 0.490 ± 0.014 |" in table
    # calibration: T 1.2, 1.4 -> 1.300 ± 0.141; ECE 4 % -> 2 % on both seeds
    assert "| run_name=ecl | mean_logits | 1.300 ± 0.141 | 4.00 ± 0.00 -> 2.00 ± 0.00 |" in table
    assert plot.is_file() and plot.stat().st_size > 5000


def test_rows_pick_and_refuse_what_the_runs_do_not_have(two_methods):
    table = main([str(two_methods[0]), "--shifted", "--rows", "selfsup@test/none"])
    body = [line for line in table.split("What each selfsup row")[0].splitlines() if line.startswith("| (defaults)")]
    # one configuration: every override is shared, so the row is "(defaults)", as in the plain report
    assert body == ["| (defaults) | selfsup@test | none | 2 | 63.00 ± 1.41 | 53.00 ± 1.41 | 43.00 ± 1.41 |"]
    assert main([str(two_methods[0]), "--shifted", "--rows", "selfsup/none"]) == table  # the name of older runs
    with pytest.raises(SystemExit):
        main([str(two_methods[0]), "--shifted", "--rows", "product/em"])


def test_a_configuration_without_an_aggregation_gets_no_empty_row(tmp_path):
    write_eval(tmp_path / "ecl", 0, "ecl", 0.0, 1.0)
    write_eval(tmp_path / "ncl", 0, "ncl", 0.0, 1.0)
    metrics_file = tmp_path / "ncl" / "0" / "metrics.json"
    metrics = {k: v for k, v in json.loads(metrics_file.read_text()).items() if "selfsup@" not in k}
    metrics_file.write_text(json.dumps(metrics))
    table = main([str(tmp_path / "ecl"), str(tmp_path / "ncl"), "--shifted"])
    assert "| run_name=ecl | selfsup@test | none |" in table
    assert "| run_name=ncl | selfsup" not in table and "| run_name=ncl | mean_logits | none |" in table


def test_each_selfsup_row_says_what_its_weights_were_fitted_on(tmp_path):
    """Both protocols in one table: a run with both rows, and a run written before the rows were named (its
    `selfsup`, fitted on the test images, is shown as selfsup@test, with its settings unknown)."""
    write_eval(tmp_path / "new", 0, "new", 0.0, 1.0, selfsup=("selfsup@test", "selfsup@train_resampled"))
    write_eval(tmp_path / "old", 0, "old", 0.0, 1.0, selfsup=("selfsup",), settings=False)
    table = main([str(tmp_path / "new"), str(tmp_path / "old"), "--shifted", "--rows", "selfsup@test/none",
                  "selfsup@train_resampled/none"])  # fmt: skip
    assert "| run_name=new | selfsup@test | none | 1 | 62.00 | 52.00 | 42.00 |" in table
    assert "| run_name=new | selfsup@train_resampled | none | 1 | 63.00 | 53.00 | 43.00 |" in table
    assert "| run_name=old | selfsup@test | none | 1 | 62.00 | 52.00 | 42.00 |" in table
    assert "| run_name=old | selfsup@train_resampled |" not in table
    settings = table.split("fitted on, and how")[1].split("Self-supervised")[0]
    assert "| config | aggregation | weights | epochs | lr | batch_size |" in settings
    assert "| run_name=new | selfsup@test | fitted on each test set's own images" in settings
    assert "| run_name=new | selfsup@train_resampled | fitted on training images resampled" in settings
    assert "(inductive: no test image) | 5 | 0.1 | 128 | - |" in settings
    assert "| run_name=old | selfsup@test | fitted on each test set's own images" in settings
    assert "what SADE's released code does) | - | - | - |" in settings
    assert "| run_name=old | selfsup@test | forward2 | 0.500 | 0.500 |" in table


def test_layout_and_parse_rows_errors():
    runs = [{"metrics": {"shifted/forward5/mean_logits/none/acc": 0.5, "shifted/backward5/mean_logits/none/acc": 0.4}}]
    assert layout(runs) == (["forward5", "backward5"], [("mean_logits", "none")])
    with pytest.raises(ValueError, match="not protocol=shifted"):
        layout([{"metrics": {"test/acc": 0.5}}])
    with pytest.raises(ValueError, match="--rows label\\+dist/none: the runs have no such"):
        parse_rows(["label+dist/none"], [("mean_logits", "none")])


def test_calibrated_em_rows_are_reported_in_the_protocol_order():
    # every correction protocol=shifted writes has a row (em_temperature and em_bcts were once dropped silently)
    metrics = {f"shifted/uniform/mean_logits/{c}/acc": 0.5 for c in ("em_bcts", "none", "em_temperature", "em")}
    metrics["shifted/uniform/mean_logits/unknown_thing/acc"] = 0.5  # not a correction: no row
    _, rows = layout([{"metrics": metrics}])
    assert rows == [("mean_logits", c) for c in ("none", "em", "em_temperature", "em_bcts")]
