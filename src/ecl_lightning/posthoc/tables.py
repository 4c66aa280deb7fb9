"""Markdown tables of a `protocol=shifted` evaluation (the layout of `ecl_lightning.report`: %, `-` when absent)."""

from __future__ import annotations

from collections.abc import Sequence


def _cell(value: float | None, percent: bool = True) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" if percent else f"{value:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table: the header, a rule, one line a row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_table(metrics: dict, profiles: Sequence[str], rows: Sequence[tuple[str, str]], key: str = "acc") -> str:
    """One row per (aggregation, correction), one column per test profile: `shifted/<profile>/<agg>/<corr>/<key>`."""
    body = [
        [agg, corr, *(_cell(metrics.get(f"shifted/{p}/{agg}/{corr}/{key}")) for p in profiles)] for agg, corr in rows
    ]
    return markdown_table(["aggregation", "correction", *profiles], body)


def split_table(metrics: dict, profiles: Sequence[str], prefix: str) -> str:
    """One row per profile: accuracy, many/medium/few, ECE in %, NLL, Brier of `shifted/<profile>/<prefix>/...`."""
    cols = ("acc", "acc_many", "acc_medium", "acc_few", "ece", "nll", "brier")
    body = [
        [p, *(_cell(metrics.get(f"shifted/{p}/{prefix}/{c}"), c.startswith(("acc", "ece"))) for c in cols)]
        for p in profiles
    ]
    return markdown_table(["test profile", "acc %", "many %", "medium %", "few %", "ECE %", "NLL", "Brier"], body)


def weights_table(weights: dict[str, list[float]]) -> str:
    """The self-supervised expert weights found on each test profile."""
    k = len(next(iter(weights.values()), []))
    body = [[p, *(f"{w:.3f}" for w in ws)] for p, ws in weights.items()]
    return markdown_table(["test profile", *(f"expert{i + 1}" for i in range(k))], body)


def calibration_table(calibration: dict[str, dict[str, float]]) -> str:
    """Per head: the temperature fitted on val, then test ECE / classwise ECE (%), NLL, Brier before -> after."""
    body = []
    for head, s in calibration.items():
        row = [head, f"{s['temperature']:.3f}"]
        for key in ("ece", "classwise_ece", "nll", "brier"):
            pct = key.endswith("ece")
            row.append(f"{_cell(s[key], pct)} -> {_cell(s[f'{key}_scaled'], pct)}")
        body.append(row)
    return markdown_table(["head", "T (val)", "ECE %", "classwise ECE %", "NLL", "Brier"], body)
