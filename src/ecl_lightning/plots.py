"""PNG plots of a finished run, from its per_class.json and reliability.json (no W&B needed).

python -m ecl_lightning.plots <run dir>     # (re)draw the plots of a run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def _heads(per_class: dict) -> list[str]:
    return [k for k in per_class if k == "ensemble" or k.startswith("expert")]


def plot_per_class_accuracy(per_class: dict, path: Path) -> Path:
    """Per-class test accuracy of each head against the class's training count (classes sorted head to tail)."""
    counts = per_class["class_counts"]
    order = sorted(range(len(counts)), key=lambda c: -counts[c])
    x = list(range(len(order)))
    fig, ax = plt.subplots(figsize=(max(6.0, min(0.12 * len(order), 16.0)), 4.0))
    twin = ax.twinx()
    twin.bar(x, [counts[c] for c in order], color="0.85", width=1.0, label="training images")
    twin.set_yscale("log")
    twin.set_ylabel("training images (log scale)")
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    for head in _heads(per_class):
        acc = [100 * per_class[head][c] if per_class[head][c] == per_class[head][c] else None for c in order]
        style = {"linewidth": 2.0, "color": "C3"} if head == "ensemble" else {"linewidth": 0.8, "alpha": 0.7}
        ax.plot(x, acc, marker="o" if len(order) <= 50 else None, markersize=3, label=head, **style)
    names = per_class.get("class_names")
    if len(order) <= 30:
        labels = [names[c] for c in order] if names else [str(c) for c in order]
        ax.set_xticks(x, labels, rotation=45 if names else 0, ha="right" if names else "center", fontsize=8)
    ax.set_xlabel(f"class{'' if names else ' (id)'}, sorted by training count: head -> tail")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.5, len(order) - 0.5)
    lines, labels = ax.get_legend_handles_labels()
    bars, bar_labels = twin.get_legend_handles_labels()
    ax.legend(lines + bars, labels + bar_labels, loc="lower left", fontsize=8, ncol=2)
    ax.set_title(f"Per-class accuracy against training count ({per_class.get('tested', '')})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reliability(reliability: dict, path: Path, head: str = "ensemble") -> Path:
    """Reliability diagram: accuracy against confidence per bin, with the bins' sample counts below."""
    bins = reliability[head]
    n = len(bins["count"])
    edges = [i / n for i in range(n)]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.0, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    total = sum(bins["count"]) or 1
    ece = sum(c * abs(a - f) for c, a, f in zip(bins["count"], bins["accuracy"], bins["confidence"], strict=True))
    ax.bar(edges, [100 * a for a in bins["accuracy"]], width=1 / n, align="edge", edgecolor="k", label="accuracy")
    ax.plot([0, 1], [0, 100], "--", color="0.4", label="perfect calibration")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Reliability ({head}), ECE {100 * ece / total:.2f} %", fontsize=10)
    hist.bar(edges, bins["count"], width=1 / n, align="edge", color="0.6", edgecolor="k")
    hist.set_xlabel("confidence")
    hist.set_ylabel("samples")
    hist.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_shifted_accuracy(metrics: dict, profiles: list[str], rows: list[tuple[str, str]], path: Path) -> Path:
    """Test accuracy against the test set's imbalance, one line per (aggregation, correction), from the flat
    `shifted/<profile>/<agg>/<corr>/acc` metrics of one `protocol=shifted` run."""
    series = {
        f"{agg} / {corr}": [(100 * metrics[f"shifted/{p}/{agg}/{corr}/acc"], 0.0) for p in profiles]
        for agg, corr in rows
    }
    styles = {f"{agg} / {corr}": (agg, corr) for agg, corr in rows}
    return plot_accuracy_vs_imbalance(series, profiles, path, styles=styles)


CORRECTION_STYLES = {"none": "-", "known": "--", "em": ":"}  # colour: aggregation (or config); line style: correction


def plot_accuracy_vs_imbalance(
    series: dict[str, list[tuple[float, float]]],
    profiles: list[str],
    path: Path,
    styles: dict[str, tuple[str, str]] | None = None,
    title: str = "Accuracy under shifted test priors",
) -> Path:
    """Accuracy (%) against the test imbalance (log scale, forward-LT left to backward-LT right): one line per series
    of (mean, std) points, a band of ± std where std > 0. `styles`: label -> (colour key, correction)."""
    from ecl_lightning.posthoc.shifted import signed_imbalance

    x = [signed_imbalance(p) for p in profiles]
    styles = styles or {label: (label, "none") for label in series}
    colours = {key: f"C{i % 10}" for i, key in enumerate(dict.fromkeys(key for key, _ in styles.values()))}
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for label, points in series.items():
        key, corr = styles[label]
        mean = [m for m, _ in points]
        ax.plot(x, mean, marker="o", markersize=3, color=colours[key], linestyle=CORRECTION_STYLES.get(corr, "-."),
                label=label)  # fmt: skip
        if any(s > 0 for _, s in points):
            ax.fill_between(x, [m - s for m, s in points], [m + s for m, s in points], color=colours[key], alpha=0.12)
    ax.set_xscale("log")
    ax.invert_xaxis()  # forward (head-heavy, ratio > 1) on the left, backward on the right
    ax.set_xticks(x, [p.replace("forward", "F").replace("backward", "B").replace("uniform", "U") for p in profiles])
    ax.minorticks_off()
    ax.set_xlabel("test class distribution: forward-LT <- uniform -> backward-LT (imbalance ratio, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_run_plots(run_dir: Path) -> list[Path]:
    """Draw per_class_accuracy.png and reliability.png into `run_dir` from the run's JSON outputs."""
    run_dir = Path(run_dir)
    per_class = json.loads((run_dir / "per_class.json").read_text())
    written = [plot_per_class_accuracy(per_class, run_dir / "per_class_accuracy.png")]
    reliability_file = run_dir / "reliability.json"
    if reliability_file.is_file():
        reliability = json.loads(reliability_file.read_text())
        if "ensemble" in reliability:
            written.append(plot_reliability(reliability, run_dir / "reliability.png"))
    return written


def main(argv: list[str] | None = None) -> list[Path]:
    """(Re)draw the plots of the run directory in `argv`; a directory without per_class.json is one line on stderr
    and exit code 2, as in every entry point."""
    from ecl_lightning.cli import PathNotFoundError, user_errors_as_messages

    parser = argparse.ArgumentParser(prog="python -m ecl_lightning.plots", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run's directory (it holds per_class.json)")
    args = parser.parse_args(argv)
    with user_errors_as_messages():
        if not (args.run_dir / "per_class.json").is_file():
            raise PathNotFoundError(
                f"{args.run_dir / 'per_class.json'} does not exist: give the directory of a run that was tested "
                "(it holds per_class.json)"
            )
        written = save_run_plots(args.run_dir)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
