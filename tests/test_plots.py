"""Run plots from the JSON outputs: files written, the data drawn is the data given."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from ecl_lightning import plots


def write_run(tmp_path, with_reliability=True):
    per_class = {"class_counts": [50, 500, 5], "tested": "test", "ensemble": [0.5, 0.9, float("nan")],
                 "expert1": [0.4, 0.8, 0.1]}  # fmt: skip
    (tmp_path / "per_class.json").write_text(json.dumps(per_class))
    if with_reliability:
        bins = {"count": [0, 10, 30], "confidence": [0.0, 0.5, 0.9], "accuracy": [0.0, 0.4, 0.8]}
        (tmp_path / "reliability.json").write_text(json.dumps({"ensemble": bins}))


def test_save_run_plots_writes_pngs(tmp_path):
    write_run(tmp_path)
    written = plots.save_run_plots(tmp_path)
    assert [p.name for p in written] == ["per_class_accuracy.png", "reliability.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_per_class_plot_sorts_head_to_tail_and_skips_untested(tmp_path, monkeypatch):
    write_run(tmp_path, with_reliability=False)
    drawn = {}
    original = plt.Axes.plot

    def spy(self, x, y, *args, label=None, **kwargs):
        drawn[label] = list(y)
        return original(self, x, y, *args, label=label, **kwargs)

    monkeypatch.setattr(plt.Axes, "plot", spy)
    plots.save_run_plots(tmp_path)
    assert drawn["ensemble"] == [pytest.approx(90.0), pytest.approx(50.0), None]  # classes 1, 0, 2; NaN not drawn
    assert drawn["expert1"] == [pytest.approx(80.0), pytest.approx(40.0), pytest.approx(10.0)]
