"""`protocol=shifted` end to end on a tiny trained checkpoint: outputs, agreement with protocol=balanced, errors."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from ecl_lightning.config import ConfigError
from ecl_lightning.evaluate import evaluate
from ecl_lightning.posthoc import shifted_eval
from helpers import compose_cfg

FAST = ["trainer.enable_progress_bar=false", "shifted.ratios=[5,2]", "selfsup.batch_size=16"]


def subsets_of(out) -> dict:
    return json.loads((out / "shifted_subsets.json").read_text())["profiles"]


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
        for agg in ("mean_logits", "mean_probs", "product", "label+dist", "selfsup@test"):
            for corr in ("none", "known", "em", "em_temperature", "em_bcts"):  # the data has a val split
                assert 0 <= metrics[f"shifted/{p}/{agg}/{corr}/acc"] <= 1
            for corr in ("em_temperature", "em_bcts"):
                assert metrics[f"shifted/{p}/{agg}/{corr}_temperature"] > 0
                assert metrics[f"shifted/{p}/{agg}/{corr}_prior_l1"] >= 0
        weights = [metrics[f"shifted/{p}/selfsup@test/weight_expert{k}"] for k in (1, 2, 3)]
        assert sum(weights) == pytest.approx(1.0, abs=1e-5)
        assert metrics[f"shifted/{p}/selfsup@test/tuning_images"] == len(subsets_of(out)[p]["indices"])
    assert metrics["settings/selfsup@test/epochs"] == 5 and metrics["settings/selfsup@test/batch_size"] == 16
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
    assert "| selfsup@test | em |" in table and "T (val)" in table and "expert3" in table
    assert "- `selfsup@test`: expert weights fitted on two draws of the training view 1 of each test set's own" in table
    assert "batch 16, 5 epoch(s)" in table and "## Self-supervised expert weights, selfsup@test" in table
    for png in ("shifted_accuracy.png", "reliability_before.png", "reliability_after.png"):
        assert (out / png).stat().st_size > 0, png
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)


def test_shifted_protocol_refuses_bad_input_before_running_the_network(trained_run, tmp_path, monkeypatch):  # noqa: F811
    _, best, _ = trained_run

    def never(*args, **kwargs):
        raise AssertionError("the network ran before the check")

    monkeypatch.setattr(shifted_eval, "collect_logits", never)
    cases = {
        "shifted.ratios=[50]": "forward50 gives class .* 0 test images",
        "shifted.n_max=11": "needs 11 test images of class 0 but the test split holds 10",
        "aggregate=[vote]": "aggregate=vote",
        "aggregate=[]": "leaves nothing to evaluate",
        "correction=[oracle]": "correction=oracle",
        "protocol=drifted": "protocol=drifted",
        "+selfsup.steps=3": "selfsup.steps is not an option",
        "shifted.collapse_weight=0": "shifted.collapse_weight=0.0 must be in",
        "selfsup.tuning_data=val": "selfsup.tuning_data=val is not one of \\['test', 'train_resampled'\\]",
        "selfsup.tuning_data=[]": "selfsup.tuning_data=\\[\\] fits on nothing",
        "selfsup.tuning_data=[test,test]": "names a tuning data twice",
        "selfsup.lr=0": "selfsup.lr=0 must be > 0",
        "selfsup.epochs=0": "selfsup.epochs=0 must be >= 1",
        "selfsup.epochs=1.5": "selfsup.epochs=1.5 must be an integer",
        "selfsup.min_weight=1": "selfsup.min_weight=1 must be in \\[0, 1\\)",
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
    assert 0 <= metrics["shifted/backward5/selfsup@test/none/acc"] <= 1
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
        assert flagged[f"shifted/{p}/selfsup@test/collapsed"] == 1.0
        weights = [flagged[f"shifted/{p}/selfsup@test/weight_expert{k}"] for k in (1, 2, 3)]
        top = max(range(3), key=weights.__getitem__)
        uniform = 100 * flagged[f"shifted/{p}/mean_logits/known/acc"]
        assert f"selfsup@test on {p}: the fitted weights collapsed onto expert{top + 1}" in text
        assert f"vs {uniform:.2f} % with uniform weights (mean_logits), correction known" in text
    assert "| mean_logits | known |" in text and "| selfsup@test | known |" in text
    calm = evaluate(compose_cfg([f"ckpt_path={best}", "protocol=shifted", *FAST, *overrides,
                                 "shifted.collapse_weight=1.0"], tmp_path / "b", config_name="eval"))  # fmt: skip
    assert all(calm[f"shifted/{p}/selfsup@test/collapsed"] == 0.0 for p in profiles)
    assert "No collapse onto one expert." in (tmp_path / "b" / "shifted.md").read_text()


def _spy(monkeypatch) -> dict:
    """Record what selfsup reads: the images loaded while view logits are collected (`during_views`: test and train
    indices), the datamodule, the view logits and every fit_selfsup_weights call."""
    seen = {"during_views": {"test": [], "train": []}, "views": [], "fits": [], "dm": None, "collecting": False}
    real_run, real_views, real_fit = (
        shifted_eval.run_shifted,
        shifted_eval.collect_view_logits,
        shifted_eval.fit_selfsup_weights,
    )

    def run_shifted(cfg, model, datamodule, *args):
        datamodule.setup("test")
        seen["dm"] = datamodule
        for split in ("test", "train"):
            dataset = getattr(datamodule, f"{split}_set")
            load = dataset.load

            def spied(i, load=load, split=split):
                if seen["collecting"]:
                    seen["during_views"][split].append(int(i))
                return load(i)

            dataset.load = spied  # an instance attribute: the views' shallow copies keep it
        return real_run(cfg, model, datamodule, *args)

    def collect_view_logits(*args):
        seen["collecting"] = True
        try:
            out = real_views(*args)
        finally:
            seen["collecting"] = False
        seen["views"].append(out)
        return out

    @functools.wraps(real_fit)  # its signature: the options are checked against it
    def fit(view1, view2, **kwargs):
        w = real_fit(view1, view2, **kwargs)
        seen["fits"].append((view1, view2, kwargs, w))
        return w

    monkeypatch.setattr(shifted_eval, "run_shifted", run_shifted)
    monkeypatch.setattr(shifted_eval, "collect_view_logits", collect_view_logits)
    monkeypatch.setattr(shifted_eval, "fit_selfsup_weights", fit)
    return seen


def test_train_resampled_fits_on_training_images_in_the_test_profiles_counts_and_never_reads_a_test_image(
    trained_run, tmp_path, monkeypatch
):  # noqa: F811
    _, best, _ = trained_run
    seen = _spy(monkeypatch)
    overrides = ["selfsup.tuning_data=train_resampled", "correction=[none]", "calibration=false"]
    metrics = evaluate(compose_cfg([f"ckpt_path={best}", "protocol=shifted", *FAST, *overrides], tmp_path, "eval"))
    assert seen["during_views"]["test"] == []  # no test image passes through the views' augmentation
    record = json.loads((tmp_path / "shifted_subsets.json").read_text())
    tuning, profiles = record["selfsup_train_resampled"], record["profiles"]
    assert seen["during_views"]["train"] == [i for p in record["order"] for i in tuning[p]]  # in order, per profile
    train_targets, test_targets = seen["dm"].train_set.targets.numpy(), seen["dm"].test_set.targets.numpy()
    for p in record["order"]:
        counts = np.bincount(test_targets[profiles[p]["indices"]], minlength=10)
        np.testing.assert_array_equal(np.bincount(train_targets[tuning[p]], minlength=10), counts)
        assert metrics[f"shifted/{p}/selfsup@train_resampled/tuning_images"] == sum(counts)
        assert 0 <= metrics[f"shifted/{p}/selfsup@train_resampled/none/acc"] <= 1
    assert len(seen["fits"]) == len(record["order"]) and not any(
        k.startswith("shifted/uniform/selfsup@test") for k in metrics
    )
    text = (tmp_path / "shifted.md").read_text()
    assert "| selfsup@train_resampled | none |" in text and "(inductive: no test image)" in text


def test_tuning_data_test_is_todays_fit_on_the_test_images_and_both_rows_fit_in_one_table(
    trained_run, tmp_path, monkeypatch
):  # noqa: F811
    """The default: each test set's weights fitted on two views of its own images, with the config's settings, as
    before tuning_data existed (fit_selfsup_weights(views[:, subset], seed=shifted.seed, **selfsup)); asking for
    both tuning data changes none of its numbers."""
    _, best, _ = trained_run
    seen = _spy(monkeypatch)
    base = [f"ckpt_path={best}", "protocol=shifted", *FAST, "correction=[none,known]", "calibration=false"]
    default = evaluate(compose_cfg(base, tmp_path / "a", "eval"))
    record = json.loads((tmp_path / "a" / "shifted_subsets.json").read_text())
    assert sorted(seen["during_views"]["test"]) == list(range(100)) and seen["during_views"]["train"] == []
    (test_views,) = seen["views"]
    settings = {"epochs": 5, "lr": 0.1, "batch_size": 16, "momentum": 0.9, "weight_decay": 5e-4, "min_weight": 0.05}
    for p, (view1, view2, kwargs, w) in zip(record["order"], seen["fits"], strict=True):
        idx = record["profiles"][p]["indices"]
        assert torch.equal(view1, test_views[0].label[:, idx]) and torch.equal(view2, test_views[1].label[:, idx])
        assert kwargs == {"seed": 0, **settings}
        assert [default[f"shifted/{p}/selfsup@test/weight_expert{k}"] for k in (1, 2, 3)] == w.tolist()
    both = evaluate(compose_cfg([*base, "selfsup.tuning_data=[test,train_resampled]"], tmp_path / "b", "eval"))
    assert {k: v for k, v in both.items() if "selfsup@train_resampled" not in k} == default
    text = (tmp_path / "b" / "shifted.md").read_text()
    rows = ("| selfsup@test | none |", "| selfsup@train_resampled | known |", "- `selfsup@test`: expert weights")
    rows += ("- `selfsup@train_resampled`: expert weights", "## Self-supervised expert weights, selfsup@train_")
    for row in rows:
        assert row in text, row
