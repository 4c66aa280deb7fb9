"""Turn a Hydra multirun directory into a Markdown table: one row per configuration, mean ± std over seeds.

python -m ecl_lightning.report logs/train/multiruns/<time> [--columns test/acc test/acc_few] [--output t.md]

Several directories make one table (a sweep split across processes or sessions, each part its own multirun):
python -m ecl_lightning.report logs/results/part_a logs/results/part_b

`--shifted` reads `python -m ecl_lightning.evaluate -m protocol=shifted ...` runs instead: one row per configuration,
aggregation and correction, one column per test class distribution, then the expert weights and the calibration
(ecl_lightning.posthoc.seeds); `--rows mean_logits/none selfsup@test/none` picks rows, `--plot acc.png` draws them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

from ecl_lightning.cli import PathNotFoundError, user_errors_as_messages

DEFAULT_COLUMNS = ("test/acc", "test/acc_many", "test/acc_medium", "test/acc_few", "test/ece")
# ckpt_path: evaluations of one configuration's seeds (`evaluate -m ckpt_path=a,b,c run_name=ecl`) pool like seeds.
IGNORED_OVERRIDES = ("seed", "ckpt_path", "hydra.", "trainer.enable_progress_bar", "data.data_dir", "paths.")


def load_runs(sweep_dir: Path) -> list[dict]:
    """Every job of a sweep that finished: its command-line overrides and its metrics.json."""
    runs = []
    for metrics_file in sorted(Path(sweep_dir).glob("*/metrics.json")):
        job_dir = metrics_file.parent
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        runs.append({"dir": job_dir, "overrides": overrides or [], "metrics": json.loads(metrics_file.read_text())})
    if not runs:
        raise PathNotFoundError(f"no */metrics.json under {sweep_dir}: is it a finished multirun directory?")
    return runs


def config_label(overrides: list[str], common: frozenset[str] = frozenset()) -> str:
    """The overrides that define a configuration: all but the seed, paths/logging ones and those every job shares."""
    kept = [o for o in overrides if o not in common and not o.lstrip("+~").startswith(IGNORED_OVERRIDES)]
    return " ".join(kept) or "(defaults)"


def group_runs(runs: list[dict]) -> dict[str, list[dict]]:
    """Configuration label -> the metrics of its runs (its seeds), in first-seen order."""
    common = frozenset.intersection(*(frozenset(r["overrides"]) for r in runs)) if len(runs) > 1 else frozenset()
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[config_label(run["overrides"], common)].append(run["metrics"])
    return groups


def summarize(runs: list[dict], columns=DEFAULT_COLUMNS) -> list[dict]:
    """Group runs by configuration; mean, std (sample, n-1) and n of each column, in first-seen order."""
    groups = group_runs(runs)
    rows = []
    for label, metrics in groups.items():
        row = {"config": label, "n": len(metrics)}
        for col in columns:
            values = [m[col] for m in metrics if col in m]
            row[col] = (
                (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None) if values else None
            )
        rows.append(row)
    return rows


def to_markdown(rows: list[dict], columns=DEFAULT_COLUMNS) -> str:
    """Accuracy and ECE columns in %, others (NLL) as they are, as `mean ± std`; `-` where no run has the metric."""

    def cell(value, col: str) -> str:
        if value is None:
            return "-"
        scale = 100 if col.rsplit("/", 1)[-1].startswith(("acc", "ece")) else 1
        mean, std = value
        return f"{scale * mean:.2f}" + (f" ± {scale * std:.2f}" if std is not None else "")

    names = [c.split("/", 1)[-1] for c in columns]
    lines = ["| config | seeds | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(columns)]
    for row in rows:
        lines.append(f"| {row['config']} | {row['n']} | " + " | ".join(cell(row[c], c) for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """The table of the sweeps in `argv` (printed, and written with --output); a wrong directory is one line on
    stderr and exit code 2, as in every entry point."""
    with user_errors_as_messages():
        return _main(argv)


def _main(argv: list[str] | None) -> str:
    parser = argparse.ArgumentParser(prog="python -m ecl_lightning.report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dirs", type=Path, nargs="+", metavar="sweep_dir", help="multirun directories (each holds 0/, 1/, ...)"
    )
    parser.add_argument("--columns", nargs="+", default=list(DEFAULT_COLUMNS), help="metrics.json keys")
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    parser.add_argument("--shifted", action="store_true", help="tables of protocol=shifted evaluations")
    parser.add_argument("--rows", nargs="+", help="with --shifted: aggregation/correction rows (default: all)")
    parser.add_argument("--plot", type=Path, help="with --shifted: draw the rows' accuracy against test imbalance")
    args = parser.parse_args(argv)
    runs = [run for sweep_dir in args.sweep_dirs for run in load_runs(sweep_dir)]
    if args.shifted:
        from ecl_lightning.posthoc.seeds import shifted_report

        try:
            table = shifted_report(group_runs(runs), args.rows, args.plot)
        except ValueError as err:
            parser.error(str(err))
    else:
        table = to_markdown(summarize(runs, args.columns), args.columns)
    if args.output:
        args.output.write_text(table + "\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
