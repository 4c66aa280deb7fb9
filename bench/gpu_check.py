"""A prepared GPU check: the GPU paths run, and the CIFAR-100-LT training step is measured, in one command.

    python3 bench/gpu_check.py OUT_DIR [--wheels .whl] [--cpu]

Sections (each independent; a failure is recorded with its error and the rest go on; exit 1 if any failed):
  fdr     `debug=fdr` of every experiment on generated data in the real formats (trainer=gpu, bf16-mixed)
  precision  the same ECL step in fp32 and bf16 autocast: relative difference of loss and gradients
  decode  torchvision.io.decode_jpeg on the device against PIL on the same JPEGs
  timing  the CIFAR-100-LT ECL step (recipe batch, 3 experts, MoCo): eager, fused, fused+compile, channels_last;
          img/s, peak memory, projected minutes for the 400-epoch recipe, and NCL's loop shape as a ratio
Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md. --cpu: the same code paths on the CPU at toy sizes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # datagen: the tiny datasets in the real formats, shared with the tests

EXPERIMENTS = ("cifar10_lt", "cifar100_lt", "imagenet_lt", "places_lt", "inat2018", "image_folder")
CIFAR100_LT_EPOCH = 10847  # training images of CIFAR-100-LT, imbalance 100
RECIPE_EPOCHS = 400


def ensure_imports(wheels: str | None) -> None:
    """Install hydra-core, omegaconf, wandb and the package from the wheels in `wheels` when any is missing."""
    missing = [m for m in ("hydra", "omegaconf", "wandb", "ecl_lightning") if importlib.util.find_spec(m) is None]
    if not missing or wheels is None:
        return
    pkgs = ["hydra-core", "omegaconf", "wandb", "ecl_lightning"]
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels, *pkgs]
    subprocess.run(cmd, check=True)
    importlib.invalidate_caches()


def write_data(exp: str, root: Path) -> list[str]:
    """Generate the experiment's tiny data set under root; return the data overrides that point at it."""
    import datagen

    if exp in ("cifar10_lt", "cifar100_lt"):
        n = 10 if exp == "cifar10_lt" else 100
        datagen.write_cifar_dataset(root, n, n_train_per_class=20, n_test_per_class=3)
        return [f"data.data_dir={root}", "data.n_max=20", "data.imbalance_factor=10"]
    if exp == "image_folder":
        datagen.write_image_folder(root, [12, 10, 8, 6])
        return [f"data.data_dir={root}", "data.image_size=16", "data.val_per_class=2"]
    datagen.write_split_tree(root, exp, 5, datagen.SPLIT_TREE_TRAIN, 3)
    return [
        f"data.split_dir={root / 'splits'}",
        f"data.image_root={root / 'images'}",
        "data.image_size=64",
        "data.resize_size=72",
    ]


def section_fdr(args, work: Path) -> dict:
    """`python -m ecl_lightning experiment=X debug=fdr trainer=gpu` for every experiment; exit 0 and metrics.json."""
    trainer = ["trainer=cpu"] if args.cpu else ["trainer=gpu"]
    runs, failed = {}, []
    for exp in args.experiments:
        cwd = work / f"fdr_{exp}"
        cwd.mkdir(parents=True, exist_ok=True)
        overrides = write_data(exp, cwd / "data")
        cmd = [sys.executable, "-m", "ecl_lightning", f"experiment={exp}", "debug=fdr", *trainer, *overrides]
        cmd += ["data.batch_size=4", "data.eval_batch_size=8", "data.num_workers=0", "data.persistent_workers=false"]
        cmd += ["model.loss.queue_size=16", "trainer.enable_progress_bar=false", "logger=csv", f"run_id={exp}"]
        start = time.perf_counter()
        try:
            out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=args.run_timeout)
            rc, tail = out.returncode, (out.stdout + out.stderr)[-2000:]
        except subprocess.TimeoutExpired:
            rc, tail = "timeout", f"no exit after {args.run_timeout} s"
        metrics = sorted((cwd / "logs").rglob(f"{exp}/metrics.json")) if (cwd / "logs").exists() else []
        ok = rc == 0 and bool(metrics)
        runs[exp] = {
            "rc": rc,
            "metrics_json": str(metrics[0]) if metrics else None,
            "seconds": time.perf_counter() - start,
        }
        if not ok:
            runs[exp]["tail"] = tail
            failed.append(exp)
    if failed:
        raise SectionError(f"failed: {failed}", runs)
    return runs


class SectionError(Exception):
    """A section's failure that still carries its partial results."""

    def __init__(self, message: str, results: dict):
        super().__init__(message)
        self.results = results


def section_timing(args, work: Path) -> dict:
    """The CIFAR-100-LT ECL step in each execution option (bench_step's bare loop), NCL's loop shape as a ratio."""
    import bench_step
    import torch

    device = "cpu" if args.cpu else "cuda"
    precision = "32-true" if args.cpu else "bf16-mixed"
    batch, steps, warmup = (16, 3, 1) if args.cpu else (64, 30, 10)
    variants = {
        "eager": ["model.net.fuse_experts=false", "model.compile=false", "model.channels_last=false"],
        "fused": ["model.net.fuse_experts=true", "model.compile=false", "model.channels_last=false"],
        "fused_compile": ["model.net.fuse_experts=true", "model.compile=true", "model.channels_last=false"],
        "channels_last": ["model.net.fuse_experts=true", "model.compile=false", "model.channels_last=true"],
        "ncl_shape": ["model.net.fuse_experts=false", "model.compile=false", "model.channels_last=false"],
    }
    skipped = {}
    if args.cpu:
        skipped["fused_compile"] = "torch.compile skipped in --cpu mode (minutes of CPU compile time)"
    out = {}
    for name, ov in variants.items():
        if name in skipped:
            continue
        argv = ["--device", device, "--precision", precision, "--batch", str(batch)]
        argv += ["--warmup", str(warmup), "--steps", str(steps), "--override", f"model.loss.queue_size={batch * 4}"]
        if name == "ncl_shape":
            argv += ["--override", "model=ncl"]
        a = bench_step.parse_args(argv)
        a.override = [*a.override, *ov] if name != "ncl_shape" else a.override
        overrides = ov if name != "ncl_shape" else ov
        bench_step.VARIANTS[f"gpucheck_{name}"] = ("bare", overrides)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = bench_step.measure(a, f"gpucheck_{name}")
        step = statistics.median(times)
        ips = batch / step
        out[name] = {
            "step_ms": step * 1e3,
            "img_per_s": ips,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
            "projected_recipe_min": CIFAR100_LT_EPOCH * RECIPE_EPOCHS / ips / 60,
        }
    if "ncl_shape" in out and "eager" in out:
        out["ncl_shape"]["ratio_vs_eager"] = out["ncl_shape"]["step_ms"] / out["eager"]["step_ms"]
    out["batch"], out["device"], out["precision"], out["skipped"] = batch, device, precision, skipped
    return out


def section_precision(args, work: Path) -> dict:
    """The same ECL step (cifar100_lt model, fixed batch and weights) in fp32 and under bf16 autocast: relative
    difference of the loss and of the flattened gradients."""
    import copy
    from contextlib import nullcontext

    import bench_step
    import torch

    device, batch = ("cpu", 8) if args.cpu else ("cuda", 64)
    a = bench_step.parse_args(
        ["--device", device, "--batch", str(batch), "--override", f"model.loss.queue_size={4 * batch}"]
    )
    torch.manual_seed(0)
    module, _, shape = bench_step.build_module(a, [])
    module.to(device).train()
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(batch, *shape, generator=g).to(device) for _ in range(2))
    y = torch.randint(0, 100, (batch,), generator=g).to(device)
    state = copy.deepcopy(module.state_dict())  # the queue and EMA encoder change in a step: restore them
    res = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        module.load_state_dict(state)
        module.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=dtype) if dtype else nullcontext():
            loss, _, _ = module.compute_loss(x1, x2, y, epoch=0.0)
        loss.backward()
        grads = [p.grad.flatten().float() for p in module.net.parameters() if p.grad is not None]
        res[name] = (loss.detach().float(), torch.cat(grads))
    (l32, g32), (l16, g16) = res["fp32"], res["bf16"]
    out = {
        "loss_fp32": l32.item(),
        "loss_bf16": l16.item(),
        "loss_rel_diff": ((l16 - l32).abs() / l32.abs()).item(),
        "grad_rel_diff": ((g16 - g32).norm() / g32.norm()).item(),
        "grad_cosine": torch.nn.functional.cosine_similarity(g16, g32, dim=0).item(),
    }
    print(f"  bf16 vs fp32: loss rel diff {out['loss_rel_diff']:.2e}, grad rel diff {out['grad_rel_diff']:.2e}")
    return out


def section_decode(args, work: Path) -> dict:
    """torchvision.io.decode_jpeg on the training device (nvJPEG on CUDA) against PIL on the same JPEG files."""
    import numpy as np
    import torch
    import torchvision.io as tio
    from PIL import Image

    import datagen

    device = "cpu" if args.cpu else "cuda"
    rng = np.random.default_rng(0)
    paths = [work / "jpeg" / f"{k}.jpg" for k in range(8 if args.cpu else 64)]
    for k, path in enumerate(paths):
        datagen.write_jpeg(path, k, rng, size=64)
    decoded = tio.decode_jpeg([tio.read_file(str(p)) for p in paths], device=device)
    diffs = []
    for path, img in zip(paths, decoded, strict=True):
        ref = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        diffs.append((img.cpu().int() - ref.int()).abs().max().item())
    return {
        "images": len(paths),
        "device": device,
        "max_abs_pixel_diff": max(diffs),
        "mean_of_max": sum(diffs) / len(diffs),
    }


def section_augment(args, work: Path) -> dict:
    """The batched GPU augmentation (data.gpu_augment) against the CPU recipe on the same images: each view's
    per-image, per-channel mean and std, averaged over the images and compared in standard errors (the random draws
    differ, their distribution must not): a difference over 5 standard errors fails."""
    import torch

    from ecl_lightning.data.transforms.recipes import (
        cifar_gpu_transforms,
        cifar_transforms,
        fmnist_gpu_transforms,
        fmnist_transforms,
    )

    device = "cpu" if args.cpu else "cuda"
    n = 256 if args.cpu else 2048
    results, worst = {}, 0.0
    for kind, cpu_fn, gpu_fn, shape in (
        ("cifar", cifar_transforms, cifar_gpu_transforms, (3, 32, 32)),
        ("fmnist", fmnist_transforms, fmnist_gpu_transforms, (1, 28, 28)),
    ):
        g = torch.Generator().manual_seed(0)
        base = torch.randint(0, 256, (n, shape[0], 1, 1), generator=g)  # a per-image colour plus texture
        x = (base + torch.randint(-40, 41, (n, *shape), generator=g)).clamp(0, 255).to(torch.uint8)
        torch.manual_seed(0)
        cpu_views = cpu_fn()[:2]
        gpu_views = gpu_fn()(x.to(device))
        for v, (cpu_view, gpu_out) in enumerate(zip(cpu_views, gpu_views, strict=True), start=1):
            cpu_out = torch.stack([cpu_view(img) for img in x])
            gpu_out = gpu_out.float().cpu()
            stats = {}
            for name in ("mean", "std"):  # per image and channel, then compared over images in standard errors
                a = getattr(cpu_out.flatten(2), name)(dim=2).double()
                b = getattr(gpu_out.flatten(2), name)(dim=2).double()
                se = (a.var(0) / len(a) + b.var(0) / len(b)).sqrt().clamp_min(1e-12)
                z = ((a.mean(0) - b.mean(0)).abs() / se).max().item()
                stats[f"cpu_{name}"], stats[f"gpu_{name}"] = a.mean(0).tolist(), b.mean(0).tolist()
                stats[f"{name}_z"] = z
                worst = max(worst, z)
            results[f"{kind}_view{v}"] = stats
    results.update({"images": n, "device": device, "max_z": worst})
    if worst > 5:
        raise SectionError(f"GPU and CPU augmentation statistics differ by {worst:.1f} standard errors", results)
    return results


SECTIONS = {
    "fdr": section_fdr,
    "precision": section_precision,
    "decode": section_decode,
    "augment": section_augment,
    "timing": section_timing,
}


def finite(x) -> bool:
    return not isinstance(x, float) or math.isfinite(x)


def write_summary(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [f"# GPU check ({report['device']}, torch {report['torch']}, {report['mode']})", ""]
    for name, sec in report["sections"].items():
        lines += [f"## {name}: {sec['status']} ({sec['seconds']:.1f} s)", ""]
        if sec.get("error"):
            lines += ["```", sec["error"][-1500:], "```", ""]
        lines += ["```json", json.dumps(sec.get("results", {}), indent=1, default=str)[:4000], "```", ""]
    (out / "gpu_check.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--wheels", default=None, help="folder of wheels to install hydra/omegaconf/wandb/the package from")
    p.add_argument("--cpu", action="store_true", help="dry mode: the same code paths on the CPU at toy sizes")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {list(SECTIONS)}")
    p.add_argument("--experiments", default=",".join(EXPERIMENTS))
    p.add_argument("--run-timeout", type=int, default=120, help="seconds per debug=fdr subprocess")
    args = p.parse_args(argv)
    args.experiments = [e for e in args.experiments.split(",") if e]
    ensure_imports(args.wheels)
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device; use --cpu for the dry mode", file=sys.stderr)
        return 2
    torch.set_float32_matmul_precision("high")
    work = args.out / "work"
    report = {
        "mode": "cpu" if args.cpu else "cuda",
        "device": "cpu" if args.cpu else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "sections": {},
    }
    for name in [s for s in args.sections.split(",") if s]:
        start = time.perf_counter()
        sec: dict = {"status": "ok"}
        try:
            sec["results"] = SECTIONS[name](args, work)
        except Exception as e:  # noqa: BLE001 - every section's failure is recorded and the rest go on
            sec["status"], sec["error"] = "failed", traceback.format_exc()
            sec["results"] = getattr(e, "results", {})
        sec["seconds"] = time.perf_counter() - start
        report["sections"][name] = sec
        print(f"{name}: {sec['status']} ({sec['seconds']:.1f} s)", flush=True)
        write_summary(args.out, report)
    return 0 if all(s["status"] == "ok" for s in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
