"""Run the network once over a split and keep every head's logits on the CPU (the protocols reuse them)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from ecl_lightning.data.datamodules.loaders import make_loader
from ecl_lightning.data.datasets.views import ImageDataset, TwoViews
from ecl_lightning.data.interface import LongTailData


@dataclass
class SplitLogits:
    """Label-head logits [K, N, C], distillation-head logits [K, N, C] (None without them), targets [N]."""

    label: Tensor
    dist: Tensor | None
    targets: Tensor


@torch.no_grad()
def collect_logits(model, loader: DataLoader, device: torch.device, view: int | None = None) -> SplitLogits:
    """Every head's float32 logits over `loader` ((x, y) batches, or (x1, x2, y) with `view` 0 or 1), in order."""
    model.eval().to(device)
    label, dist, targets = [], [], []
    for batch in loader:
        x, y = (batch[0], batch[-1]) if view is None else (batch[view], batch[-1])
        out = model.net(model._layout(x.to(device)))
        label.append(out["logits"].float().cpu())
        if out.get("dist_logits") is not None:
            dist.append(out["dist_logits"].float().cpu())
        targets.append(y.cpu())
    return SplitLogits(torch.cat(label, 1), torch.cat(dist, 1) if dist else None, torch.cat(targets))


def augmented_views(dataset: ImageDataset, view: nn.Module) -> ImageDataset:
    """A shallow copy of an evaluation set whose items are (view(img), view(img), y): two independent draws of one
    augmentation of each stored image (the set's own transform is left as it is)."""
    views = copy.copy(dataset)
    views.transform = TwoViews(view, view)
    return views


def train_view(datamodule: LongTailData) -> nn.Module:
    """The datamodule's training view 1 with augmentation on (the view the label heads learn from), on the CPU (also
    under gpu_augment: its CPU recipe)."""
    return datamodule.transforms(True)[0]


def views_loader(datamodule: LongTailData, dataset: ImageDataset, indices: Sequence[int] | None = None) -> DataLoader:
    """In-order loader of two augmented views of `dataset` (of its items `indices`, repeats allowed, when given;
    one process: evaluate runs on one)."""
    views = augmented_views(dataset, train_view(datamodule))
    return make_loader(
        views if indices is None else Subset(views, list(indices)),
        datamodule.eval_batch_size,
        train=False,
        num_workers=datamodule.num_workers,
        pin_memory=datamodule.pin_memory,
        persistent_workers=False,
    )


@torch.no_grad()
def collect_view_logits(model, loader: DataLoader, device: torch.device) -> tuple[SplitLogits, SplitLogits]:
    """Every head's logits of both views of each (x1, x2, y) batch, in one pass over the loader."""
    model.eval().to(device)
    outs: list[list[dict]] = [[], []]
    targets = []
    for x1, x2, y in loader:
        for view, x in enumerate((x1, x2)):
            out = model.net(model._layout(x.to(device)))
            outs[view].append({k: out[k].float().cpu() for k in ("logits", "dist_logits") if out.get(k) is not None})
        targets.append(y.cpu())
    y = torch.cat(targets)

    def split(parts: list[dict]) -> SplitLogits:
        dist = torch.cat([p["dist_logits"] for p in parts], 1) if "dist_logits" in parts[0] else None
        return SplitLogits(torch.cat([p["logits"] for p in parts], 1), dist, y)

    return split(outs[0]), split(outs[1])
