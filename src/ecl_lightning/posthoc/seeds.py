"""Several `protocol=shifted` evaluations as one table: mean ± std over the seeds of each configuration.

`python -m ecl_lightning.report --shifted <eval multirun dirs> [--rows mean_logits/none ...] [--plot acc.png]`
joins evaluations like `report` does (jobs that differ only by `ckpt_path` or `seed` pool as seeds; `run_name`
names the configuration) and writes: the accuracy on each test class distribution for each (aggregation,
correction), the self-supervised expert weights with the data and settings they were fitted with, and the
calibration before and after temperature scaling. The selfsup rows name their tuning data (`selfsup@test`,
`selfsup@train_resampled`, docs/method.md 5.3); a run written before that naming (`selfsup`) fitted on the test images
and is shown as `selfsup@test`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from ecl_lightning.posthoc.shifted import signed_imbalance
from ecl_lightning.posthoc.shifted_eval import CORRECTIONS
from ecl_lightning.posthoc.tables import markdown_table

AGGREGATION_ORDER = ("mean_logits", "mean_probs", "product", "label+dist", "selfsup@test", "selfsup@train_resampled")
CALIBRATION_KEYS = ("ece", "classwise_ece", "nll", "brier")
SELFSUP_SETTINGS = ("epochs", "lr", "batch_size", "momentum", "weight_decay", "min_weight")
SELFSUP_DATA = {
    "selfsup@test": "fitted on each test set's own images, labels unused (transductive; what SADE's released code "
    "does)",
    "selfsup@train_resampled": "fitted on training images resampled per class to each test set's class counts "
    "(inductive: no test image)",
}


def name_legacy_selfsup(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics of a run written before the selfsup rows named their tuning data: `shifted/<set>/selfsup/...` becomes
    `shifted/<set>/selfsup@test/...` (the only protocol there was then: the weights were fitted on the test images)."""
    if not any(key.split("/")[2:3] == ["selfsup"] for key in metrics if key.startswith("shifted/")):
        return metrics
    out = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] == "shifted" and parts[2:3] == ["selfsup"]:
            parts[2] = "selfsup@test"
        out["/".join(parts)] = value
    return out


def layout(runs: Sequence[dict]) -> tuple[list[str], list[tuple[str, str]]]:
    """The test profiles (forward-LT first, by imbalance) and the (aggregation, correction) rows that the runs'
    `shifted/<profile>/<agg>/<corr>/acc` metrics hold, in the protocol's order (aggregation, then
    none, known, em, em_temperature, em_bcts)."""
    profiles: dict[str, None] = {}
    rows: dict[tuple[str, str], None] = {}
    for run in runs:
        for key in run["metrics"]:
            parts = key.split("/")
            if len(parts) == 5 and parts[0] == "shifted" and parts[4] == "acc" and parts[3] in CORRECTIONS:
                profiles[parts[1]] = None
                rows[(parts[2], parts[3])] = None
    if not rows:
        raise ValueError("no shifted/<profile>/<aggregation>/<correction>/acc metrics: not protocol=shifted runs?")

    def rank(row: tuple[str, str]) -> tuple[int, int]:
        agg, corr = row
        known = agg in AGGREGATION_ORDER
        return (AGGREGATION_ORDER.index(agg) if known else len(AGGREGATION_ORDER), CORRECTIONS.index(corr))

    return sorted(profiles, key=signed_imbalance, reverse=True), sorted(rows, key=rank)


def parse_rows(specs: Sequence[str] | None, available: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """`agg/corr` strings (`mean_logits/none`) -> rows, each checked against what the runs hold; `selfsup/<corr>`,
    the name before the rows named their tuning data, is `selfsup@test/<corr>`."""
    if not specs:
        return list(available)
    rows = []
    for spec in specs:
        agg, _, corr = spec.rpartition("/")
        agg = "selfsup@test" if agg == "selfsup" else agg
        if (agg, corr) not in available:
            have = ", ".join(f"{a}/{c}" for a, c in available)
            raise ValueError(f"--rows {spec}: the runs have no such aggregation/correction; they have {have}")
        rows.append((agg, corr))
    return rows


def _stats(values: list[float]) -> tuple[float, float | None] | None:
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _pm(stat: tuple[float, float | None] | None, scale: float = 100, digits: int = 2) -> str:
    if stat is None:
        return "-"
    mean, std = stat
    return f"{scale * mean:.{digits}f}" + (f" ± {scale * std:.{digits}f}" if std is not None else "")


def accuracy_stats(
    groups: dict[str, list[dict]], profiles: Sequence[str], rows: Sequence[tuple[str, str]]
) -> dict[tuple[str, str, str], list[tuple[float, float | None] | None]]:
    """(config, agg, corr) -> per profile (mean, std) of the accuracy over the group's runs."""
    out = {}
    for label, metrics in groups.items():
        for agg, corr in rows:
            out[(label, agg, corr)] = [
                _stats([m[k] for m in metrics if (k := f"shifted/{p}/{agg}/{corr}/acc") in m]) for p in profiles
            ]
    return out


def accuracy_markdown(groups: dict[str, list[dict]], profiles, rows) -> str:
    stats = accuracy_stats(groups, profiles, rows)
    body = [  # a configuration without an aggregation (NCL has no distillation heads) gets no row for it
        [label, agg, corr, str(len(groups[label])), *(_pm(s) for s in cells)]
        for (label, agg, corr), cells in stats.items()
        if any(s is not None for s in cells)
    ]
    return markdown_table(["config", "aggregation", "correction", "seeds", *profiles], body)


def selfsup_rows(metrics: dict[str, float]) -> list[str]:
    """The selfsup aggregations (`selfsup@<tuning data>`) whose weights a run's metrics hold, in the table order."""
    rows = {key.split("/")[2] for key in metrics if key.startswith("shifted/") and key.endswith("/weight_expert1")}
    return sorted(rows, key=lambda a: AGGREGATION_ORDER.index(a) if a in AGGREGATION_ORDER else len(AGGREGATION_ORDER))


def weights_markdown(groups: dict[str, list[dict]], profiles: Sequence[str]) -> str | None:
    """Mean self-supervised expert weights per profile (SADE's aggregation), one row per (config, selfsup row,
    profile)."""
    body = []
    for label, metrics in groups.items():
        for agg in selfsup_rows(metrics[0]):
            k = sum(1 for key in metrics[0] if key.startswith(f"shifted/{profiles[0]}/{agg}/weight_expert"))
            for p in profiles:
                cells = [_stats([m[f"shifted/{p}/{agg}/weight_expert{i + 1}"] for m in metrics]) for i in range(k)]
                body.append([label, agg, p, *(_pm(s, scale=1, digits=3) for s in cells)])
    if not body:
        return None
    k = len(body[0]) - 3
    return markdown_table(["config", "aggregation", "test profile", *(f"expert{i + 1}" for i in range(k))], body)


def settings_markdown(groups: dict[str, list[dict]]) -> str | None:
    """Per config and selfsup row: its tuning data and the fit's settings (`settings/<row>/<key>` in metrics.json;
    `-` for runs that predate them, `varies` when the seeds disagree)."""
    body = []
    for label, metrics in groups.items():
        for agg in selfsup_rows(metrics[0]):
            cells = []
            for key in SELFSUP_SETTINGS:
                values = {m.get(f"settings/{agg}/{key}") for m in metrics}
                cells.append("varies" if len(values) > 1 else "-" if None in values else f"{values.pop():g}")
            body.append([label, agg, SELFSUP_DATA.get(agg, "?"), *cells])
    if not body:
        return None
    return markdown_table(["config", "aggregation", "weights", *SELFSUP_SETTINGS], body)


def calibration_markdown(groups: dict[str, list[dict]]) -> str | None:
    """Per config and head: the val-fitted temperature, then test ECE / classwise ECE (%), NLL, Brier, before ->
    after."""
    body = []
    for label, metrics in groups.items():
        heads = dict.fromkeys(key.split("/")[1] for key in metrics[0] if key.startswith("calibration/"))
        for head in heads:
            p = f"calibration/{head}/"
            row = [label, head, _pm(_stats([m[p + "temperature"] for m in metrics]), scale=1, digits=3)]
            for key in CALIBRATION_KEYS:
                scale, digits = (100, 2) if key.endswith("ece") else (1, 3)
                before = _stats([m[p + key] for m in metrics if p + key in m])
                after = _stats([m[p + key + "_scaled"] for m in metrics if p + key + "_scaled" in m])
                row.append(f"{_pm(before, scale, digits)} -> {_pm(after, scale, digits)}")
            body.append(row)
    if not body:
        return None
    return markdown_table(["config", "head", "T (val)", "ECE %", "classwise ECE %", "NLL", "Brier"], body)


def shifted_report(groups: dict[str, list[dict]], rows: Sequence[str] | None = None, plot: Path | None = None) -> str:
    """The Markdown of several seeds' shifted evaluations (and the accuracy plot, mean ± std, when asked)."""
    groups = {label: [name_legacy_selfsup(m) for m in metrics] for label, metrics in groups.items()}
    all_runs = [{"metrics": m} for metrics in groups.values() for m in metrics]
    profiles, available = layout(all_runs)
    chosen = parse_rows(rows, available)
    sections = [
        "Test accuracy (%), mean ± std over seeds, per test class distribution (forward-LT: head classes frequent).",
        accuracy_markdown(groups, profiles, chosen),
    ]
    settings = settings_markdown(groups)
    if settings:
        caption = "What each selfsup row's weights were fitted on, and how (docs/method.md 5.3; `-`: not recorded):"
        sections += [caption, settings]
    weights = weights_markdown(groups, profiles)
    if weights:
        sections += ["Self-supervised expert weights, mean ± std:", weights]
    calibration = calibration_markdown(groups)
    if calibration:
        sections += ["Calibration on the test split, temperature fitted on val, before -> after:", calibration]
    if plot is not None:
        from ecl_lightning.plots import plot_accuracy_vs_imbalance

        stats = accuracy_stats(groups, profiles, chosen)
        series, styles = {}, {}
        for (label, agg, corr), cells in stats.items():
            if all(s is None for s in cells):
                continue
            name = f"{label}: {agg} / {corr}" if len(groups) > 1 else f"{agg} / {corr}"
            series[name] = [(100 * s[0], 100 * (s[1] or 0.0)) if s else (float("nan"), 0.0) for s in cells]
            styles[name] = (f"{label} {agg}", corr)  # colour per configuration and aggregation
        plot_accuracy_vs_imbalance(
            series, profiles, plot, styles=styles, title="Accuracy under shifted test priors (mean ± std over seeds)"
        )
    return "\n\n".join(sections)
