"""`protocol=shifted` end to end on a tiny trained checkpoint: outputs, agreement with protocol=balanced, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecl_lightning.config import ConfigError
from ecl_lightning.evaluate import evaluate
from ecl_lightning.evaluation import protocol
from helpers import compose_cfg

FAST = ["trainer.enable_progress_bar=false", "shifted.ratios=[5,2]", "selfsup.batch_size=16"]


def test_shifted_protocol_writes_every_output(trained_run, tmp_path):  # noqa: F811
    _, best, _ = trained_run
    balanced = evaluate(compose_cfg([f"ckpt_path={best}", *FAST], tmp_path / "b", config_name="eval"))
    out = tmp_path / "s"
    metrics = evaluate(compose_cfg([f"ckpt_path={best}", "protocol=shifted", *FAST], out, config_name="eval"))
    profiles = ["forward5", "forward2", "uniform", "backward2", "backward5"]
    # The tiny test split holds 10 images per class: uniform is the whole split, so it matches protocol=balanced, up
    # to float32 rounding: the two paths sum in different orders, and the order depends on the thread count (ECE
    # differed by 1.2e-6 relative with OMP_NUM_THREADS=1).
    for key in ("acc", "acc_medium", "acc_few", "ece", "ece_few", "nll"):
        shifted_key = "acc_class" if key == "acc" else key
        expected = pytest.approx(balanced[f"test/{key}"], rel=1e-5, abs=1e-7)
        assert metrics[f"shifted/uniform/mean_logits/none/{shifted_key}"] == expected
    assert metrics["shifted/uniform/expert2/acc_class"] == pytest.approx(balanced["test/expert2/acc"])
    for p in profiles:
        for agg in ("mean_logits", "mean_probs", "product", "label+dist", "selfsup"):
            for corr in ("none", "known", "em", "em_temperature", "em_bcts"):  # the data has a val split
                assert 0 <= metrics[f"shifted/{p}/{agg}/{corr}/acc"] <= 1
            for corr in ("em_temperature", "em_bcts"):
                assert metrics[f"shifted/{p}/{agg}/{corr}_temperature"] > 0
                assert metrics[f"shifted/{p}/{agg}/{corr}_prior_l1"] >= 0
        weights = [metrics[f"shifted/{p}/selfsup/weight_expert{k}"] for k in (1, 2, 3)]
        assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    subsets = json.loads((out / "shifted_subsets.json").read_text())
    assert subsets["order"] == profiles and subsets["n_max"] == 10
    targets = np.repeat(np.arange(10), 10)  # any 10-per-class labelling: only the counts are compared
    for p, entry in subsets["profiles"].items():
        assert len(entry["indices"]) == sum(entry["counts"]), p
    assert subsets["profiles"]["uniform"]["indices"] == list(range(len(targets)))
    assert subsets["profiles"]["forward5"]["counts"][subsets["class_order"][0]] == 10
    assert subsets["profiles"]["backward5"]["counts"][subsets["class_order"][-1]] == 10
    assert metrics["calibration/mean_logits/temperature"] > 0
    assert "calibration/expert1/brier_scaled" in metrics
    table = (out / "shifted.md").read_text()
    assert "| selfsup | em |" in table and "T (val)" in table and "expert3" in table
    for png in ("shifted_accuracy.png", "reliability_before.png", "reliability_after.png"):
        assert (out / png).stat().st_size > 0, png
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)


def test_shifted_protocol_refuses_bad_input_before_running_the_network(trained_run, tmp_path, monkeypatch):  # noqa: F811
    _, best, _ = trained_run

    def never(*args, **kwargs):
        raise AssertionError("the network ran before the check")

    monkeypatch.setattr(protocol, "collect_logits", never)
    cases = {
        "shifted.ratios=[50]": "forward50 gives class .* 0 test images",
        "shifted.n_max=11": "needs 11 test images of class 0 but the test split holds 10",
        "aggregate=[vote]": "aggregate=vote",
        "aggregate=[]": "leaves nothing to evaluate",
        "correction=[oracle]": "correction=oracle",
        "protocol=drifted": "protocol=drifted",
        "+selfsup.steps=3": "selfsup.steps is not an option",
        "shifted.collapse_weight=0": "shifted.collapse_weight=0.0 must be in",
    }
    for i, (override, message) in enumerate(cases.items()):
        cfg = compose_cfg([f"ckpt_path={best}", "protocol=shifted", *FAST, override], tmp_path / str(i), "eval")
        with pytest.raises(ConfigError, match=message):
            evaluate(cfg)


def test_shifted_protocol_logs_table_and_plots_to_wandb(trained_run, tmp_path, monkeypatch):  # noqa: F811
    _, best, _ = trained_run
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = [f"ckpt_path={best}", "protocol=shifted", *FAST, "logger=wandb", "aggregate=[mean_logits]"]
    evaluate(compose_cfg(overrides, tmp_path, config_name="eval"))
    import wandb

    wandb.teardown()
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    media = run / "files" / "media"
    assert any((media / "table" / "shifted").glob("accuracy*.table.json"))
    assert len(list((media / "images" / "shifted").glob("plots*.png"))) == 3  # accuracy, reliability before/after


def test_selfsup_on_label_and_distillation_heads(trained_run, tmp_path):  # noqa: F811
    _, best, _ = trained_run
    overrides = ["heads=label+dist", "aggregate=[selfsup,mean_logits]", "correction=[none]", "calibration=false"]
    cfg = compose_cfg([f"ckpt_path={best}", "protocol=shifted", *FAST, *overrides], tmp_path, config_name="eval")
    metrics = evaluate(cfg)
    assert 0 <= metrics["shifted/backward5/selfsup/none/acc"] <= 1
    assert not any(k.startswith("calibration/") for k in metrics)
    # heads=label+dist makes each expert the mean of its two heads: mean_logits is the label+dist ensemble
    assert "| mean_logits | none |" in (tmp_path / "shifted.md").read_text()


def test_a_collapse_of_the_selfsup_weights_is_said_with_the_uniform_result_beside_it(trained_run, tmp_path):  # noqa: F811
    """SADE users saw its aggregation fall from 87 % to 30 % when the weights went to one expert: any set whose
    largest weight reaches shifted.collapse_weight is flagged in metrics.json, the log and shifted.md, next to the
    uniform (mean_logits) accuracy, which is scored even when only selfsup is asked for."""
    _, best, _ = trained_run
    overrides = ["aggregate=[selfsup]", "correction=[known]", "calibration=false"]
    # max_k w_k >= 1/K always: a threshold of 0.3 (K = 3) flags every set, 1.0 none (softmax weights are < 1)
    flagged = evaluate(compose_cfg([f"ckpt_path={best}", "protocol=shifted", *FAST, *overrides,
                                    "shifted.collapse_weight=0.3"], tmp_path / "a", config_name="eval"))  # fmt: skip
    profiles = ["forward5", "forward2", "uniform", "backward2", "backward5"]
    text = (tmp_path / "a" / "shifted.md").read_text()
    for p in profiles:
        assert flagged[f"shifted/{p}/selfsup/collapsed"] == 1.0
        weights = [flagged[f"shifted/{p}/selfsup/weight_expert{k}"] for k in (1, 2, 3)]
        top = max(range(3), key=weights.__getitem__)
        uniform = 100 * flagged[f"shifted/{p}/mean_logits/known/acc"]
        assert f"selfsup on {p}: the fitted weights collapsed onto expert{top + 1}" in text
        assert f"vs {uniform:.2f} % with uniform weights (mean_logits), correction known" in text
    assert "| mean_logits | known |" in text and "| selfsup | known |" in text
    calm = evaluate(compose_cfg([f"ckpt_path={best}", "protocol=shifted", *FAST, *overrides,
                                 "shifted.collapse_weight=1.0"], tmp_path / "b", config_name="eval"))  # fmt: skip
    assert all(calm[f"shifted/{p}/selfsup/collapsed"] == 0.0 for p in profiles)
    assert "No collapse onto one expert." in (tmp_path / "b" / "shifted.md").read_text()
