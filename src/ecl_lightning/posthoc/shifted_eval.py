"""`python -m ecl_lightning.evaluate ckpt_path=... protocol=shifted`: shifted test priors (docs/method.md 5.1).

Runs the network once over the test split (and, for `selfsup`, two augmented views of its tuning images: the test
split, or training images resampled to each test set's class counts; and the val split for the temperatures),
then computes every test profile x aggregation x prior correction from the stored logits on the CPU.
Over 300 lines: the whole driver of one protocol (collect, compute, write tables and plots, log), in reading order;
the formulas are in shifted.py, prior.py, aggregate.py and calibration.py.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from ecl_lightning.config import ConfigError
from ecl_lightning.heads import Heads, expert_number
from ecl_lightning.metrics import LongTailMetrics
from ecl_lightning.outputs import write_json
from ecl_lightning.posthoc.aggregate import AGGREGATIONS, aggregate, fit_selfsup_weights
from ecl_lightning.posthoc.calibration import (
    brier_score,
    calibration_scores,
    fit_bcts,
    fit_temperature,
    reliability_bins,
)
from ecl_lightning.posthoc.logits import SplitLogits, collect_logits, collect_view_logits, views_loader
from ecl_lightning.posthoc.prior import em_prior, prior_correction
from ecl_lightning.posthoc.resample import resample_to_profile
from ecl_lightning.posthoc.shifted import default_n_max, profile_counts, shifted_subsets
from ecl_lightning.posthoc.tables import accuracy_table, calibration_table, split_table, weights_table

if TYPE_CHECKING:
    from ecl_lightning.data.interface import LongTailData

log = logging.getLogger("ecl_lightning")

PROTOCOLS = ("balanced", "shifted")
CORRECTIONS = ("none", "known", "em", "em_temperature", "em_bcts")
# EM on calibrated logits: the calibration is fitted on the val split (balanced), never on test (docs/method.md 5.2)
EM_CALIBRATIONS = {"em": "none", "em_temperature": "temperature", "em_bcts": "bcts"}
FIXED = ("mean_logits", "mean_probs", "product", "label+dist")  # no fitting on test images: calibrated on val
# What selfsup fits its weights on; each is its own aggregation row, `selfsup@<tuning_data>` (docs/method.md 5.3)
TUNING_DATA = ("test", "train_resampled")


def selfsup_row(tuning_data: str) -> str:
    """The aggregation name of selfsup fitted on `tuning_data`, in metric keys and tables: `selfsup@test`."""
    return f"selfsup@{tuning_data}"


def tuning_data_of(aggregation: str) -> str | None:
    """`selfsup@train_resampled` -> `train_resampled`; None for every other aggregation."""
    name, _, data = aggregation.partition("@")
    return data if name == "selfsup" and data else None


@dataclass
class ShiftedOptions:
    ratios: list[float]
    seed: int
    n_max: int | None
    aggregations: list[str]
    corrections: list[str]
    correction_tau: float
    selfsup: dict
    calibrate: bool
    tuning_data: tuple[str, ...] = ("test",)
    collapse_weight: float = 0.9
    em_max_iter: int = 1000
    em_tol: float = 1e-6


def check_options(cfg: DictConfig, model, datamodule: LongTailData) -> ShiftedOptions:
    """Every `protocol=shifted` option checked against the model and the data, before any network runs."""
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol={cfg.protocol} is not one of {PROTOCOLS}")
    has_dist = model.net.dist_heads is not None
    heads = Heads.parse(str(cfg.heads), key="heads")
    num_experts = 1 if heads.expert is not None else model.num_experts
    aggregations = cfg.get("aggregate")
    if aggregations is None:  # all that apply to this model
        aggregations = [a for a in ("mean_logits", "mean_probs", "product") if num_experts > 1 or a == "mean_logits"]
        aggregations += ["label+dist"] if has_dist and heads == Heads() else []
        aggregations += ["selfsup"] if num_experts > 1 else []
    aggregations = [str(a) for a in ([aggregations] if isinstance(aggregations, str) else aggregations)]
    if not aggregations:
        raise ConfigError("aggregate=[] leaves nothing to evaluate; leave it null for every rule that applies")
    for a in aggregations:
        if a not in (*AGGREGATIONS, "label+dist"):
            raise ConfigError(f"aggregate={a} is not one of {(*AGGREGATIONS, 'label+dist')}")
    if "selfsup" in aggregations and "mean_logits" not in aggregations:
        # the uniform result is kept beside the fitted one, so a collapse of the weights can be judged
        aggregations.insert(aggregations.index("selfsup"), "mean_logits")
    selfsup, tuning_data = check_selfsup(cfg.get("selfsup"))
    if "selfsup" in aggregations:  # one row per tuning data: selfsup@test, selfsup@train_resampled
        i = aggregations.index("selfsup")
        aggregations[i : i + 1] = [selfsup_row(t) for t in tuning_data]
    if "label+dist" in aggregations and not has_dist:
        raise ConfigError("aggregate=label+dist needs distillation heads; this checkpoint has none")
    has_val = getattr(datamodule, "val_set", None) is not None
    corrections = cfg.get("correction")
    if corrections is None:  # every correction that applies: the calibrated EMs need a val split
        corrections = ["none", "known", "em"] + (["em_temperature", "em_bcts"] if has_val else [])
    corrections = [str(c) for c in ([corrections] if isinstance(corrections, str) else corrections) or ["none"]]
    for c in corrections:
        if c not in CORRECTIONS:
            raise ConfigError(f"correction={c} is not one of {CORRECTIONS}")
        if c in ("em_temperature", "em_bcts") and not has_val:
            raise ConfigError(
                f"correction={c} calibrates the logits on the val split before EM, and {datamodule.name} has none "
                "(never on test); use correction=[none,known,em]"
            )
    calibrate = cfg.get("calibration")
    if calibrate and not has_val:
        raise ConfigError(
            f"calibration=true fits the temperatures on the val split, and {datamodule.name} has none "
            "(never on test); use calibration=false"
        )
    shifted = cfg.get("shifted") or {}
    collapse = float(shifted.get("collapse_weight", 0.9))
    if not 0 < collapse <= 1:
        raise ConfigError(f"shifted.collapse_weight={collapse} must be in (0, 1]: the largest selfsup weight that "
                          "counts as a collapse onto one expert")  # fmt: skip
    return ShiftedOptions(
        ratios=[float(r) for r in shifted.get("ratios", [50, 25, 10, 5, 2])],
        seed=int(shifted.get("seed", 0)),
        n_max=None if shifted.get("n_max") is None else int(shifted.n_max),
        aggregations=aggregations,
        corrections=corrections,
        correction_tau=float(cfg.get("correction_tau", 1.0)),
        selfsup=selfsup,
        calibrate=has_val if calibrate is None else bool(calibrate),
        tuning_data=tuning_data,
        collapse_weight=collapse,
        em_max_iter=int((cfg.get("em") or {}).get("max_iter", 1000)),
        em_tol=float((cfg.get("em") or {}).get("tol", 1e-6)),
    )


def check_selfsup(node) -> tuple[dict, tuple[str, ...]]:
    """`selfsup.*` checked: (the settings of fit_selfsup_weights, the tuning data, one or several)."""
    selfsup = dict(OmegaConf.to_container(node or {}, resolve=True))
    tuning = selfsup.pop("tuning_data", "test")
    tuning = tuple(str(t) for t in ([tuning] if isinstance(tuning, str) else tuning or []))
    if not tuning:
        raise ConfigError(f"selfsup.tuning_data=[] fits on nothing; use one or more of {list(TUNING_DATA)}")
    for t in tuning:
        if t not in TUNING_DATA:
            raise ConfigError(
                f"selfsup.tuning_data={t} is not one of {list(TUNING_DATA)} (test: the test set's own images, as "
                "SADE's released code; train_resampled: training images resampled to the test set's class counts)"
            )
    if len(set(tuning)) < len(tuning):
        raise ConfigError(f"selfsup.tuning_data={list(tuning)} names a tuning data twice")
    allowed = set(inspect.signature(fit_selfsup_weights).parameters) - {"view1", "view2", "seed"}
    if set(selfsup) - allowed:
        raise ConfigError(
            f"selfsup.{sorted(set(selfsup) - allowed)[0]} is not an option; use {sorted(allowed | {'tuning_data'})}"
        )
    for key, value in selfsup.items():
        integer = key in ("epochs", "batch_size")
        if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
            raise ConfigError(f"selfsup.{key}={value!r} must be {'an integer' if integer else 'a number'}")
        ok, bounds = {
            "epochs": (value >= 1, ">= 1"),
            "batch_size": (value >= 1, ">= 1"),
            "lr": (value > 0, "> 0"),
            "momentum": (0 <= value < 1, "in [0, 1)"),
            "weight_decay": (value >= 0, ">= 0"),
            "min_weight": (0 <= value < 1, "in [0, 1)"),
        }[key]
        if not ok:
            raise ConfigError(f"selfsup.{key}={value!r} must be {bounds}")
    return selfsup, tuning


def describe_selfsup(tuning_data: str, settings: dict) -> str:
    """One line: what `selfsup@<tuning_data>` was fitted on, and with which settings (shifted.md, the log)."""
    data = {
        "test": "each test set's own images, labels unused (transductive, as SADE's released code)",
        "train_resampled": "training images resampled per class to each test set's class counts (inductive: no "
        "test image)",
    }[tuning_data]
    s = {**selfsup_defaults(), **settings}
    return (
        f"`{selfsup_row(tuning_data)}`: expert weights fitted on two draws of the training view 1 of {data}; "
        f"SGD{' (Nesterov)' * (s['momentum'] > 0)}, lr {s['lr']:g}, momentum {s['momentum']:g}, weight decay "
        f"{s['weight_decay']:g}, batch {s['batch_size']}, {s['epochs']} epoch(s), stop once a weight < "
        f"{s['min_weight']:g}"
    )


def selfsup_defaults() -> dict:
    """fit_selfsup_weights's own defaults of the settings that `selfsup.*` may override."""
    params = inspect.signature(fit_selfsup_weights).parameters
    return {k: p.default for k, p in params.items() if k not in ("view1", "view2", "seed")}


def expert_logits(split: SplitLogits, heads: Heads) -> Tensor:
    """The per-expert logits [K, N, C] that `heads` selects (label, label+dist averaged per expert, or expert<k>)."""
    return heads.selected(heads.per_expert(split.label, split.dist))


def combine(split: SplitLogits, heads: Heads, method: str, weights: Tensor | None = None) -> Tensor:
    """Aggregated logits [N, C]; `label+dist` is the mean over experts of each expert's mean label/dist logits."""
    if method == "label+dist":
        return ((split.label + split.dist) / 2).mean(0)
    return aggregate(expert_logits(split, heads), "selfsup" if tuning_data_of(method) else method, weights)


def scores(logits: Tensor, targets: Tensor, class_counts, eval_cfg) -> dict[str, float]:
    """acc (sample accuracy, SADE's `All`), acc_class (mean per-class), acc/ece per split, ece, nll, brier."""
    metric = LongTailMetrics(
        logits.shape[1],
        class_counts,
        many_threshold=eval_cfg.many_threshold,
        few_threshold=eval_cfg.few_threshold,
        n_bins=eval_cfg.n_bins,
    )
    metric.update(logits, targets)
    out = {k: float(v) for k, v in metric.compute().items()}
    out["acc_class"] = out.pop("acc")
    out["acc"] = float((logits.argmax(-1) == targets).float().mean())
    out["brier"] = brier_score(F.softmax(logits.double(), -1), targets)
    return out


def _subset(split: SplitLogits, idx: Tensor) -> SplitLogits:
    dist = None if split.dist is None else split.dist[:, idx]
    return SplitLogits(split.label[:, idx], dist, split.targets[idx])


def _device(cfg: DictConfig) -> torch.device:
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    use_cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda" if use_cuda else "cpu")


def run_shifted(cfg: DictConfig, model, datamodule: LongTailData, output_dir: Path, loggers: list) -> dict[str, float]:
    """Evaluate on the shifted test profiles; write metrics.json, shifted.md, the PNGs; return the flat metrics."""
    datamodule.setup("test")
    opts = check_options(cfg, model, datamodule)
    class_counts = datamodule.class_counts
    test_targets = datamodule.test_set.targets.numpy()
    subsets = shifted_subsets(test_targets, class_counts, opts.ratios, opts.seed, opts.n_max)
    n_max = opts.n_max if opts.n_max is not None else default_n_max(test_targets, len(class_counts))
    tuning: dict[str, np.ndarray] = {}  # test set -> indices into the training split (selfsup@train_resampled)
    if any(tuning_data_of(a) == "train_resampled" for a in opts.aggregations):
        train_targets = datamodule.train_set.targets.numpy()
        for name, idx in subsets.items():
            counts = np.bincount(test_targets[idx], minlength=len(class_counts))
            tuning[name] = resample_to_profile(train_targets, counts, opts.seed, name)
    write_json(
        output_dir / "shifted_subsets.json",
        {
            "seed": opts.seed,
            "n_max": n_max,
            "order": list(subsets),  # the keys below are written sorted
            "class_order": np.argsort(-np.asarray(class_counts), kind="stable").tolist(),
            "profiles": {
                name: {"counts": profile_counts(n_max, class_counts, name).tolist(), "indices": idx.tolist()}
                for name, idx in subsets.items()
            },
            # selfsup@train_resampled: per test set, the training images (indices into the training split) its
            # weights were fitted on; the same class counts as the test set
            **({"selfsup_train_resampled": {name: idx.tolist() for name, idx in tuning.items()}} if tuning else {}),
        },
    )
    heads = Heads.parse(str(cfg.heads), key="heads")
    device = _device(cfg)
    log.info("protocol=shifted: collecting logits of %d test images on %s", len(test_targets), device)
    test = collect_logits(model, datamodule.test_dataloader(), device)
    views = None
    if selfsup_row("test") in opts.aggregations:
        log.info("Collecting logits of two augmented (training view 1) views of the test images for selfsup@test")
        views = collect_view_logits(model, views_loader(datamodule, datamodule.test_set), device)
        views = tuple(expert_logits(v, heads) for v in views)
    train_views = {}  # test set -> two views' logits of its resampled training images
    for name, idx in tuning.items():
        log.info("selfsup@train_resampled on %s: logits of two views of %d resampled training images", name, len(idx))
        loader = views_loader(datamodule, datamodule.train_set, idx)
        train_views[name] = tuple(expert_logits(v, heads) for v in collect_view_logits(model, loader, device))

    val = None
    if opts.calibrate or any(EM_CALIBRATIONS.get(c, "none") != "none" for c in opts.corrections):
        log.info("Collecting logits of the val split (temperatures, calibration before EM)")
        val = collect_logits(model, datamodule.val_dataloader(), device)
    em_calibrators: dict[tuple, tuple[float, Tensor | None]] = {}

    eval_cfg = model.eval_cfg
    metrics: dict[str, float] = {}
    for agg in (a for a in opts.aggregations if tuning_data_of(a)):
        # the settings beside the numbers, so that a table can say which fit produced them
        for key, value in {**selfsup_defaults(), **opts.selfsup}.items():
            metrics[f"settings/{agg}/{key}"] = float(value)
    weights: dict[str, dict[str, list[float]]] = {}  # selfsup row -> test set -> weights
    collapsed: list[tuple[str, str]] = []  # (selfsup row, test set)
    for name, idx_np in subsets.items():
        idx = torch.as_tensor(idx_np)
        part = _subset(test, idx)
        y = part.targets
        prior = torch.bincount(y, minlength=model.num_classes).double() / len(y)
        for agg in opts.aggregations:
            w = None
            if tuning_data_of(agg):
                v1, v2 = (v[:, idx] for v in views) if tuning_data_of(agg) == "test" else train_views[name]
                w = fit_selfsup_weights(v1, v2, seed=opts.seed, **opts.selfsup)
                weights.setdefault(agg, {})[name] = w.tolist()
                for k, wk in enumerate(w.tolist()):
                    metrics[f"shifted/{name}/{agg}/weight_expert{k + 1}"] = wk
                metrics[f"shifted/{name}/{agg}/tuning_images"] = float(v1.shape[1])
                metrics[f"shifted/{name}/{agg}/collapsed"] = float(w.max() >= opts.collapse_weight)
                if w.max() >= opts.collapse_weight:
                    collapsed.append((agg, name))
            z = combine(part, heads, agg, w)
            for corr in opts.corrections:
                if corr == "none":
                    zc = z
                elif corr == "known":
                    zc = prior_correction(z, prior.float(), opts.correction_tau)
                else:
                    kind = EM_CALIBRATIONS[corr]
                    zcal = z
                    if kind != "none":
                        key = (agg, kind, None if w is None else name)  # selfsup: its own weights per test set
                        if key not in em_calibrators:
                            em_calibrators[key] = _fit_calibrator(combine(val, heads, agg, w), val.targets, kind)
                        t, bias = em_calibrators[key]
                        zcal = z / t + (0 if bias is None else bias.to(z))
                        metrics[f"shifted/{name}/{agg}/{corr}_temperature"] = t
                    estimate = em_prior(zcal, max_iter=opts.em_max_iter, tol=opts.em_tol)
                    metrics[f"shifted/{name}/{agg}/{corr}_prior_l1"] = float((estimate.double() - prior).abs().sum())
                    zc = prior_correction(zcal, estimate, opts.correction_tau)
                for key, value in scores(zc, y, class_counts, eval_cfg).items():
                    metrics[f"shifted/{name}/{agg}/{corr}/{key}"] = value
        per_expert = expert_logits(part, heads)
        if len(per_expert) > 1:
            for k in range(len(per_expert)):
                for key, value in scores(per_expert[k], y, class_counts, eval_cfg).items():
                    metrics[f"shifted/{name}/expert{k + 1}/{key}"] = value

    calibration, reliability = {}, {}
    if opts.calibrate:
        calibration, reliability = _calibrate(val, test, heads, opts.aggregations, eval_cfg.n_bins)
        for head, values in calibration.items():
            metrics.update({f"calibration/{head}/{k}": v for k, v in values.items()})
    else:
        log.warning("%s has no val split: no temperature scaling (it is never fitted on test)", datamodule.name)

    profiles = list(subsets)
    rows = [(a, c) for a in opts.aggregations for c in opts.corrections]
    warnings = collapse_warnings(metrics, collapsed, opts.collapse_weight, opts.corrections[0])
    for line in warnings:
        log.warning(line)
    _write_outputs(output_dir, metrics, profiles, rows, weights, calibration, reliability, cfg, opts, loggers, warnings)
    return metrics


def _fit_calibrator(val_logits: Tensor, targets: Tensor, kind: str) -> tuple[float, Tensor | None]:
    """(temperature, per-class biases or None) fitted on the val split's logits of one aggregation."""
    if kind == "temperature":
        return fit_temperature(val_logits, targets), None
    t, bias = fit_bcts(val_logits, targets)
    return t, bias.float()


def collapse_warnings(
    metrics: dict[str, float], collapsed: list[tuple[str, str]], threshold: float, correction: str
) -> list[str]:
    """One line per (selfsup row, test set) whose weights put `threshold` or more on one expert, with the uniform
    (mean_logits) accuracy beside the fitted one, so a user sees what the collapse cost or gained."""
    lines = []
    for agg, name in collapsed:
        w, k = [], 1
        while f"shifted/{name}/{agg}/weight_expert{k}" in metrics:
            w.append(metrics[f"shifted/{name}/{agg}/weight_expert{k}"])
            k += 1
        top = max(range(len(w)), key=w.__getitem__)
        fitted = metrics[f"shifted/{name}/{agg}/{correction}/acc"]
        uniform = metrics[f"shifted/{name}/mean_logits/{correction}/acc"]
        lines.append(
            f"{agg} on {name}: the fitted weights collapsed onto expert{top + 1} (w = {w[top]:.3f} >= "
            f"shifted.collapse_weight={threshold:g}); accuracy {100 * fitted:.2f} % vs {100 * uniform:.2f} % with "
            f"uniform weights (mean_logits), correction {correction}"
        )
    return lines


def _calibrate(val: SplitLogits, test: SplitLogits, heads: Heads, aggregations: list[str], n_bins: int):
    """One temperature per head (each expert, each fixed aggregation) fitted on val; scores on the test split."""
    candidates: dict[str, tuple[Tensor, Tensor]] = {}
    for agg in (a for a in aggregations if a in FIXED):
        candidates[agg] = (combine(val, heads, agg), combine(test, heads, agg))
    val_experts, test_experts = expert_logits(val, heads), expert_logits(test, heads)
    if len(val_experts) > 1:
        for k in range(len(val_experts)):
            candidates[f"expert{k + 1}"] = (val_experts[k], test_experts[k])
    calibration, reliability = {}, {}
    for head, (zv, zt) in candidates.items():
        t = fit_temperature(zv, val.targets)
        before = calibration_scores(zt, test.targets, n_bins)
        after = calibration_scores(zt / t, test.targets, n_bins)
        calibration[head] = {"temperature": t, **before, **{f"{k}_scaled": v for k, v in after.items()}}
        if head == aggregations[0]:
            reliability = {
                f"{head}, T=1": reliability_bins(F.softmax(zt.double(), -1), test.targets, n_bins),
                f"{head}, T={t:.2f} (val)": reliability_bins(F.softmax(zt.double() / t, -1), test.targets, n_bins),
            }
    return calibration, reliability


def _write_outputs(
    output_dir, metrics, profiles, rows, weights, calibration, reliability, cfg, opts, loggers, warnings
):
    from ecl_lightning.plots import plot_reliability, plot_shifted_accuracy

    write_json(output_dir / "metrics.json", metrics)
    first = opts.aggregations[0]
    sections = [
        f"# Shifted test priors: {Path(cfg.ckpt_path).name}, heads={cfg.heads}, correction_tau={opts.correction_tau:g}",
        "Test accuracy (%, all samples, as SADE reports it) per test class distribution; the class order is the "
        "training counts' (forward: head classes most frequent).",
        accuracy_table(metrics, profiles, rows),
    ]
    selfsup_rows = [tuning_data_of(a) for a in opts.aggregations if tuning_data_of(a)]
    if selfsup_rows:
        sections += ["\n".join(f"- {describe_selfsup(t, opts.selfsup)}" for t in selfsup_rows)]
    for corr in opts.corrections:
        sections += [f"## {first}, correction {corr}: per split", split_table(metrics, profiles, f"{first}/{corr}")]
    expert_rows = sorted({k.split("/")[2] for k in metrics if k.split("/")[2].startswith("expert")})
    if expert_rows:
        body = [
            [e, *(f"{100 * metrics[f'shifted/{p}/{e}/acc']:.2f}" for p in profiles)]
            for e in sorted(expert_rows, key=expert_number)
        ]
        sections += [
            "## Each expert (no correction), accuracy %",
            "\n".join(
                ["| expert | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
                + ["| " + " | ".join(r) + " |" for r in body]
            ),
        ]
    for agg, per_set in weights.items():
        sections += [f"## Self-supervised expert weights, {agg}", weights_table(per_set)]
        lines = [f"- **Collapsed**: {line}" for line in warnings if line.startswith(f"{agg} on ")]
        sections += ["\n".join(lines) or "No collapse onto one expert."]
    if calibration:
        sections += [
            "## Calibration on the test split: temperature fitted on val, before -> after",
            calibration_table(calibration),
        ]
    text = "\n\n".join(sections) + "\n"
    (output_dir / "shifted.md").write_text(text)
    images = []
    try:
        images.append(plot_shifted_accuracy(metrics, profiles, rows, output_dir / "shifted_accuracy.png"))
        for i, head in enumerate(reliability):
            path = output_dir / ("reliability_before.png" if i == 0 else "reliability_after.png")
            images.append(plot_reliability(reliability, path, head=head))
    except Exception as err:  # a plot must never cost an evaluation its numbers
        log.warning("Could not draw the shifted-protocol plots: %s", err)
    _log(loggers, metrics, profiles, rows, images)
    log.info("protocol=shifted results -> %s\n%s", output_dir / "shifted.md", text)


def _log(loggers: list, metrics: dict, profiles: list[str], rows: list[tuple[str, str]], images: list[Path]) -> None:
    """Flat metrics to every logger; with W&B also the accuracy table and the PNGs, then end the run (without
    `wandb.finish()` the next job of a multirun would log into this run)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        logger.log_metrics(metrics)
        if isinstance(logger, WandbLogger):
            header = ["aggregation", "correction", *profiles]
            data = [[a, c, *(metrics.get(f"shifted/{p}/{a}/{c}/acc") for p in profiles)] for a, c in rows]
            logger.log_table("shifted/accuracy", columns=header, data=data)
            if images:
                logger.log_image("shifted/plots", [str(p) for p in images])
        logger.finalize("success")
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()
