"""`report --shifted`: several seeds' protocol=shifted evaluations as one table, mean ± std, with weights,
calibration and the plot."""

from __future__ import annotations

import json

import pytest
import yaml

from ecl_lightning.evaluation.seeds import layout, parse_rows
from ecl_lightning.report import main

PROFILES = ("backward2", "forward2", "uniform")  # stored out of order on purpose


def write_eval(root, num, run_name, acc_shift, temperature):
    """A protocol=shifted job: accuracies 0.5 + shift (+0.1 forward, -0.1 backward), 2 aggregations x 2 corrections."""
    metrics = {}
    for p in PROFILES:
        base = 0.5 + acc_shift + {"forward2": 0.1, "uniform": 0.0, "backward2": -0.1}[p]
        for agg, bonus in (("mean_logits", 0.0), ("selfsup", 0.02)):
            for corr, fix in (("none", 0.0), ("known", 0.05)):
                metrics[f"shifted/{p}/{agg}/{corr}/acc"] = base + bonus + fix
                metrics[f"shifted/{p}/{agg}/{corr}/nll"] = 1.0  # not an accuracy row
        metrics[f"shifted/{p}/selfsup/weight_expert1"] = 0.5 + acc_shift
        metrics[f"shifted/{p}/selfsup/weight_expert2"] = 0.5 - acc_shift
        metrics[f"shifted/{p}/expert1/acc"] = 0.3
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
    assert "| run_name=ecl | selfsup | known | 2 | 68.00 ± 1.41 | 58.00 ± 1.41 | 48.00 ± 1.41 |" in table
    assert "| run_name=ncl | mean_logits | none | 1 | 50.00 | 40.00 | 30.00 |" in table
    rows = [line.split(" | ")[1:3] for line in table.split("Self-supervised")[0].splitlines() if "run_name=ecl" in line]
    assert rows == [["mean_logits", "none"], ["mean_logits", "known"], ["selfsup", "none"], ["selfsup", "known"]]
    assert "expert1 |" not in header and "| expert1 |" not in table.split("Self-supervised")[0]  # experts: no rows
    # weights: expert1 0.5 and 0.52 -> 0.510 ± 0.014
    assert "| run_name=ecl | forward2 | 0.510 ± 0.014 | 0.490 ± 0.014 |" in table
    # calibration: T 1.2, 1.4 -> 1.300 ± 0.141; ECE 4 % -> 2 % on both seeds
    assert "| run_name=ecl | mean_logits | 1.300 ± 0.141 | 4.00 ± 0.00 -> 2.00 ± 0.00 |" in table
    assert plot.is_file() and plot.stat().st_size > 5000


def test_rows_pick_and_refuse_what_the_runs_do_not_have(two_methods):
    table = main([str(two_methods[0]), "--shifted", "--rows", "selfsup/none"])
    body = [line for line in table.split("Self-supervised")[0].splitlines() if line.startswith("| (defaults)")]
    # one configuration: every override is shared, so the row is "(defaults)", as in the plain report
    assert body == ["| (defaults) | selfsup | none | 2 | 63.00 ± 1.41 | 53.00 ± 1.41 | 43.00 ± 1.41 |"]
    with pytest.raises(SystemExit):
        main([str(two_methods[0]), "--shifted", "--rows", "product/em"])


def test_a_configuration_without_an_aggregation_gets_no_empty_row(tmp_path):
    write_eval(tmp_path / "ecl", 0, "ecl", 0.0, 1.0)
    write_eval(tmp_path / "ncl", 0, "ncl", 0.0, 1.0)
    metrics_file = tmp_path / "ncl" / "0" / "metrics.json"
    metrics = {k: v for k, v in json.loads(metrics_file.read_text()).items() if "/selfsup/" not in k}
    metrics_file.write_text(json.dumps(metrics))
    table = main([str(tmp_path / "ecl"), str(tmp_path / "ncl"), "--shifted"])
    assert "| run_name=ecl | selfsup | none |" in table
    assert "| run_name=ncl | selfsup |" not in table and "| run_name=ncl | mean_logits | none |" in table


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
