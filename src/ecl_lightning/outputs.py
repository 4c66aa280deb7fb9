"""What a run leaves in its directory: the resolved config, metrics.json, per_class.json, reliability.json, the
plots, and the results table in the log."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ecl_lightning.heads import expert_number

log = logging.getLogger("ecl_lightning")

SPLIT_COLUMNS = ("acc", "acc_many", "acc_medium", "acc_few", "ece", "nll")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_resolved_config(cfg: DictConfig, output_dir: Path) -> None:
    """Write the fully resolved config as <run dir>/config.yaml."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def results_table(metrics: dict[str, float], stage: str = "test") -> str:
    """Plain-text table: one row per head (ensemble, expert1..K), columns acc/many/medium/few in %, ECE %, NLL."""
    heads = ["ensemble"] + sorted(
        {k.split("/")[1] for k in metrics if k.count("/") == 2 and k.startswith(f"{stage}/")},
        key=lambda h: expert_number(h) or 0,
    )
    header = ["head", "acc %", "many %", "medium %", "few %", "ECE %", "NLL"]
    rows = [header]
    for head in heads:
        prefix = f"{stage}/" if head == "ensemble" else f"{stage}/{head}/"
        row = [head]
        for col in SPLIT_COLUMNS:
            value = metrics.get(prefix + col)
            if value is None:
                row.append("-")
            elif col == "nll":
                row.append(f"{value:.3f}")
            else:
                row.append(f"{100 * value:.2f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_test_outputs(output_dir: Path, metrics: dict[str, float], model, class_counts, tested: str) -> None:
    """metrics.json (flat), per_class.json (per-class accuracy of each head, class names where the checkpoint has
    them) and the results table in the log."""
    write_json(output_dir / "metrics.json", metrics)
    names = model.hparams.get("class_names")
    write_json(
        output_dir / "per_class.json",
        {
            "class_counts": list(class_counts),
            **({"class_names": list(names)} if names else {}),
            "tested": tested,
            **model.test_per_class,
        },
    )
    write_json(output_dir / "reliability.json", model.test_reliability)
    try:
        from ecl_lightning.plots import save_run_plots

        save_run_plots(output_dir)
    except Exception as err:  # a plot must never cost a finished run its numbers
        log.warning("Could not draw the run's plots: %s", err)
    log.info("Test results (%s) -> %s\n%s", tested, output_dir / "metrics.json", results_table(metrics))
