"""`python -m ecl_lightning.predict ckpt_path=... input=<file | folder | glob> output=predictions.csv`

Batched inference with a trained checkpoint: one CSV row per file with the predicted class name, its probability,
the top-k classes and each expert's prediction. A file that cannot be read gets a row with the reason (and no
prediction); the run never stops in the middle. The images go through the eval transform of the checkpoint's data
(its run's config.yaml, or `data=...`), so any size and mode is resized, cropped and normalised as the test images.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ecl_lightning.cli import PathNotFoundError, check_output_file
from ecl_lightning.config import ConfigError
from ecl_lightning.data.datasets.image_files import load_image
from ecl_lightning.data.input_spec import InputSpec
from ecl_lightning.data.transforms.recipes import eval_transform
from ecl_lightning.inference import load_for_inference

log = logging.getLogger("ecl_lightning")


def list_inputs(pattern: str) -> list[Path]:
    """A file, every file under a folder (recursively, hidden ones skipped, sorted), or the files a glob matches;
    nothing found is a user error naming `input=`."""
    path = Path(pattern).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = []
        for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
        if not found:
            raise ConfigError(f"input={pattern} is an empty folder (hidden files are skipped): give a folder of images")
        return found
    matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True))
    files = [p for p in matches if p.is_file()]
    if not files:
        raise PathNotFoundError(f"input={pattern}: no such file or folder, and no file matches it as a glob")
    return files


class PredictDataset(Dataset):
    """(image tensor, position, error): a file that cannot be decoded gives a zero image and its reason."""

    def __init__(self, files: list[Path], spec: InputSpec) -> None:
        self.files, self.spec, self.transform = files, spec, eval_transform(spec)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            return self.transform(load_image(self.files[i], self.spec.channels)), i, ""
        except Exception as err:  # any failure of this one file is reported in its row
            cause = err.__cause__ or err
            size = (self.spec.channels, self.spec.image_size, self.spec.image_size)
            return torch.zeros(size), i, f"{type(cause).__name__}: {cause}"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def predict(cfg: DictConfig) -> dict:
    """Write the predictions CSV; return a summary (images, unreadable, seconds, images_per_s, output).
    The input, the output and the checkpoint are checked (one-line errors) before any image is read."""
    files = list_inputs(str(cfg.input))
    output = Path(cfg.output).expanduser()
    check_output_file(output)
    loaded = load_for_inference(cfg)
    device = resolve_device(cfg.device)
    # The weights in the layout the module trained in (its setup() does this under a Trainer): channels_last is 2x
    # faster here on CPU than converting every batch for contiguous weights.
    model, names = loaded.model.to(device, memory_format=loaded.model.memory_format), loaded.class_names
    top_k = min(int(cfg.top_k), len(names))
    loader = DataLoader(
        PredictDataset(files, loaded.spec),
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    experts = [f"expert{k + 1}" for k in range(model.num_experts)] if model.num_experts > 1 else []
    header = ["path", "class", "prob"]
    header += [f"top{i + 1}_{what}" for i in range(top_k) for what in ("class", "prob")]
    header += [*experts, "error"]
    unreadable = 0
    start = time.perf_counter()
    with open(output, "w", newline="") as f, torch.inference_mode():
        writer = csv.writer(f)
        writer.writerow(header)
        for images, positions, errors in tqdm(loader, desc="predict", unit="batch", disable=not cfg.progress):
            ensemble, per_expert = model.predict_logits(images.to(device, non_blocking=True))
            probs = ensemble.softmax(-1)
            top_p, top_c = probs.topk(top_k, dim=-1)
            expert_pred = per_expert.argmax(-1).T.tolist() if experts else [[] for _ in positions]
            top_p, top_c = top_p.tolist(), top_c.tolist()
            for row, (pos, error) in enumerate(zip(positions.tolist(), errors, strict=True)):
                path = str(files[pos])
                if error:
                    unreadable += 1
                    writer.writerow([path, "", "", *[""] * (2 * top_k), *[""] * len(experts), error])
                    continue
                tops = [v for c, p in zip(top_c[row], top_p[row], strict=True) for v in (names[c], f"{p:.4f}")]
                writer.writerow(
                    [
                        path,
                        names[top_c[row][0]],
                        f"{top_p[row][0]:.4f}",
                        *tops,
                        *[names[c] for c in expert_pred[row]],
                        "",
                    ]
                )
    seconds = time.perf_counter() - start
    summary = {
        "images": len(files),
        "predicted": len(files) - unreadable,
        "unreadable": unreadable,
        "seconds": seconds,
        "images_per_s": len(files) / seconds if seconds > 0 else float("inf"),
        "device": str(device),
        "output": str(output),
    }
    log.info(
        "Predicted %d of %d file(s) (%d unreadable, listed with their reason) in %.1f s, %.0f images/s on %s, "
        "%s, heads=%s -> %s",
        summary["predicted"], len(files), unreadable, seconds, summary["images_per_s"], device, loaded.ckpt_path.name,
        loaded.heads, output,
    )  # fmt: skip
    return summary


@hydra.main(version_base="1.3", config_path="pkg://ecl_lightning.conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from ecl_lightning.cli import user_errors_as_messages

    with user_errors_as_messages():  # a wrong input, output or checkpoint: its message and exit code 2
        predict(cfg)


if __name__ == "__main__":
    main()
