"""Long-tail evaluation: shot-split accuracy, ECE and NLL as one DDP-correct torchmetrics Metric."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor

SPLITS = ("many", "medium", "few")


def shot_masks(
    class_counts: Tensor | Sequence[int], many_threshold: int = 100, few_threshold: int = 20
) -> dict[str, Tensor]:
    """Bool masks [C] by training count n: many n > many_threshold, few n < few_threshold, else medium."""
    if few_threshold > many_threshold:
        raise ValueError(f"few_threshold ({few_threshold}) must be <= many_threshold ({many_threshold})")
    n = torch.as_tensor(class_counts)
    return {
        "many": n > many_threshold,
        "medium": (n >= few_threshold) & (n <= many_threshold),
        "few": n < few_threshold,
    }


class LongTailMetrics(torchmetrics.Metric):
    """Overall and per-shot-split accuracy (mean of per-class accuracies), ECE and NLL.

    Every state is a per-class sum reduced with "sum" across processes, so split metrics are exact under DDP
    as long as each sample is evaluated once (check `count`). ECE bins are kept per true class, so per-split
    ECE is the ECE of the samples whose true class lies in that split.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        class_counts: Tensor | Sequence[int] | None = None,
        many_threshold: int = 100,
        few_threshold: int = 20,
        n_bins: int = 15,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 1 or n_bins < 1:
            raise ValueError(f"num_classes and n_bins must be >= 1, got {num_classes} and {n_bins}")
        self.num_classes = num_classes
        self.many_threshold = many_threshold
        self.few_threshold = few_threshold
        self.n_bins = n_bins
        c, b = num_classes, n_bins
        self.add_state("correct", torch.zeros(c, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(c, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("nll_sum", torch.zeros(c, dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("bin_count", torch.zeros(c, b, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bin_conf", torch.zeros(c, b, dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("bin_correct", torch.zeros(c, b, dtype=torch.long), dist_reduce_fx="sum")
        # Registered in __init__ (not setup) so the metric exists before the data is known.
        self.register_buffer("class_counts", torch.zeros(c, dtype=torch.long), persistent=False)
        if class_counts is not None:
            self.set_class_counts(class_counts)

    def set_class_counts(self, class_counts: Tensor | Sequence[int]) -> None:
        """Set the training count of each class (defines the shot splits)."""
        counts = torch.as_tensor(class_counts, dtype=torch.long, device=self.class_counts.device)
        if counts.shape != (self.num_classes,):
            raise ValueError(f"class_counts must have shape ({self.num_classes},), got {tuple(counts.shape)}")
        self.class_counts.copy_(counts)
        self._computed = None  # compute() caches its result; the splits just changed

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Accumulate a batch of logits [B, C] and integer targets [B]."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have shape [B, {self.num_classes}], got {tuple(logits.shape)}")
        target = target.long()
        log_p = F.log_softmax(logits.detach().float(), dim=-1)
        conf, pred = log_p.max(dim=-1)
        conf = conf.exp()
        hit = (pred == target).long()
        nll = -log_p.gather(1, target[:, None]).squeeze(1)
        b = self.n_bins
        # Bin j holds confidences in (j/b, (j+1)/b]; confidence >= 1/C > 0 so the clamp only catches rounding.
        bins = (torch.ceil(conf * b).long() - 1).clamp(0, b - 1)
        flat = target * b + bins
        # index_add_ rather than bincount(weights=...): the latter has no deterministic CUDA kernel.
        self.total.index_add_(0, target, torch.ones_like(target))
        self.correct.index_add_(0, target, hit)
        self.nll_sum.index_add_(0, target, nll)
        self.bin_count.view(-1).index_add_(0, flat, torch.ones_like(flat))
        self.bin_conf.view(-1).index_add_(0, flat, conf)
        self.bin_correct.view(-1).index_add_(0, flat, hit)

    def per_class_accuracy(self) -> Tensor:
        """Accuracy of each class [C]; NaN where the class has no test samples."""
        total = self.total.float()
        acc = self.correct.float() / total.clamp_min(1)
        return torch.where(total > 0, acc, torch.full_like(acc, float("nan")))

    def synced_per_class_accuracy(self) -> Tensor:
        """per_class_accuracy() over the states of all processes (plain per_class_accuracy reads the local ones)."""
        with self.sync_context(should_unsync=True):
            return self.per_class_accuracy()

    def reliability(self) -> dict[str, list[float]]:
        """Per confidence bin, over all processes: sample count, mean confidence, accuracy (a reliability diagram)."""
        with self.sync_context(should_unsync=True):
            count = self.bin_count.sum(0).float()
            conf, correct = self.bin_conf.sum(0), self.bin_correct.sum(0).float()
        safe = count.clamp_min(1)
        return {"count": count.tolist(), "confidence": (conf / safe).tolist(), "accuracy": (correct / safe).tolist()}

    def _ece(self, mask: Tensor) -> Tensor:
        """Expected calibration error of the samples whose true class is in `mask`."""
        count = self.bin_count[mask].sum(0).float()
        gap = (self.bin_correct[mask].sum(0).float() - self.bin_conf[mask].sum(0)).abs()
        return gap.sum() / count.sum()  # sum_b n_b/N * |acc_b - conf_b| = sum_b |correct_b - conf_b| / N

    def compute(self) -> dict[str, Tensor]:
        """acc, ece, nll, count; plus acc_/ece_{many,medium,few} for splits with test support (else absent).

        With no samples seen only `count` is returned; with class counts never set, only the overall keys.
        """
        count = self.total.sum()
        out: dict[str, Tensor] = {"count": count}
        if count == 0:
            return out
        acc = self.per_class_accuracy()
        supported = self.total > 0
        every = torch.ones_like(supported)
        out["acc"] = acc[supported].mean()
        out["ece"] = self._ece(every)
        out["nll"] = self.nll_sum.sum() / count
        if not bool((self.class_counts > 0).any()):
            return out
        for name, mask in shot_masks(self.class_counts, self.many_threshold, self.few_threshold).items():
            mask = mask.to(supported.device)
            if not bool((mask & supported).any()):
                continue
            out[f"acc_{name}"] = acc[mask & supported].mean()
            out[f"ece_{name}"] = self._ece(mask)
        return out
