"""ECLModule: the multi-expert network, the ECL losses and the long-tail metrics wired into Lightning.

The tensor math lives in `ecl_lightning.losses` (pure functions) and `ecl_lightning.models`; this file is glue.
CE, Balanced Softmax and NCL are configurations of this one module (conf/model/*.yaml). Over 300 lines on purpose:
the objective's glue (`compute_loss` and its terms) stays beside the hooks so one training step reads top to bottom;
RNG-state checkpointing, the evaluated-sample check and model-size logging live in rng_state.py, sample_count.py
and models/profile.py.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecl_lightning.config import (
    ConfigError,
    EvalConfig,
    LossConfig,
    NetConfig,
    OptimConfig,
    ScheduleConfig,
    from_dict,
    upgrade_keys,
)
from ecl_lightning.heads import Heads
from ecl_lightning.losses import (
    class_ema_update,
    class_ema_weights,
    distillation_weights,
    drw_class_weights,
    expert_label_biases,
    expert_label_loss,
    feature_distillation_loss,
    hcm_keep_mask,
    hcm_logits,
    kd_loss,
    ldam_margins,
    linear_ramp,
    mixup_batch,
    moco_loss,
    normalize_weights,
    online_teachers,
    ride_diversity_loss,
    ride_diversity_temperature,
    supcon_loss,
)
from ecl_lightning.metrics import SPLITS, LongTailMetrics
from ecl_lightning.models import KeyQueue, MomentumEncoder, MultiExpertNet, concat_all_gather
from ecl_lightning.models.profile import log_model_size
from ecl_lightning.optim import build_optimizer, lr_factor, scaled_lr
from ecl_lightning.rng_state import gather_rng_states, restore_rng_states
from ecl_lightning.sample_count import check_num_samples

log = logging.getLogger("ecl_lightning")


class ECLModule(L.LightningModule):
    """Trains K experts with label, (re-weighted) distillation, feature and contrastive losses; evaluates per split.

    All arguments are plain values/dicts (what Hydra hands over with `_convert_: all`), so checkpoints load with
    `weights_only=True`. `class_counts` (training images per class) fixes the prior and the shot splits;
    `class_names` (optional) are kept in the checkpoint for prediction, export and reports. `in_chans` and
    `img_size` (the side of the input images) come from the data; `img_size` sizes the backbones that need it (ViTs).
    """

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int] | None = None,
        in_chans: int = 3,
        img_size: int | None = None,
        net: dict | None = None,
        loss: dict | None = None,
        optim: dict | None = None,
        schedule: dict | None = None,
        eval: dict | None = None,  # noqa: A002 - the config group's name
        channels_last: bool = False,
        compile: bool = False,  # noqa: A002 - the config key
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            if len(class_names) != num_classes:
                raise ConfigError(f"class_names has {len(class_names)} entries, expected num_classes={num_classes}")
        if class_counts is not None:
            class_counts = [int(c) for c in class_counts]
            if len(class_counts) != num_classes:
                raise ConfigError(f"class_counts has {len(class_counts)} entries, expected num_classes={num_classes}")
        self.save_hyperparameters()
        self.net_cfg = from_dict(NetConfig, net, "model.net")
        self.loss_cfg = from_dict(LossConfig, upgrade_keys(loss, "model.loss"), "model.loss")  # old checkpoints too
        self.optim_cfg = from_dict(OptimConfig, optim, "model.optim")
        self.schedule_cfg = from_dict(ScheduleConfig, schedule, "model.schedule")
        self.eval_cfg = from_dict(EvalConfig, eval, "model.eval")
        self.num_classes = num_classes
        # NHWC activations: 1.1-1.2x per training step on CPU (docs/performance.md), and the layout tensor cores want.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

        n, c = self.net_cfg, self.loss_cfg
        self.num_experts = n.num_experts
        for key in ("label_tau", "label_inverse_tau"):
            values = getattr(c, key)
            if values is not None and len(values) != n.num_experts:
                raise ConfigError(
                    f"model.loss.{key} has {len(values)} values, expected one per expert "
                    f"(model.net.num_experts={n.num_experts})"
                )
        # The objective: a list of terms (model.loss.terms, or derived from the weights), summed in this order.
        self.terms = c.objective_terms(n.num_experts, c.contrastive != "none" and c.con_weight > 0)
        multi_only = [t for t in self.terms if t in ("kd", "kd_hcm", "feat", "diversity")]
        if n.num_experts == 1 and multi_only:
            raise ConfigError(f"model.loss.terms has {multi_only}, which need model.net.num_experts >= 2")
        # Build only the heads the configured losses train: a module without gradient stops a DDP run at step 2.
        self.uses_kd = "kd" in self.terms
        self.use_contrastive = "con" in self.terms
        if c.dist_head and not self.uses_kd:
            log.info("No online distillation in this configuration: no distillation heads are built.")
        self.img_size = img_size
        self.net = self._build_net(in_chans, dist_head=c.dist_head and self.uses_kd)
        self.heads = Heads.parse(self.eval_cfg.heads)  # the test-time logits (model.eval.heads)
        self.heads.check_model(n.num_experts, has_dist_heads=self.net.dist_heads is not None)
        if self.use_contrastive:
            # NCL's key encoder starts from its own random initialisation (moco_init: random), MoCo's from a copy.
            init_from = self._build_net(in_chans, dist_head=False) if c.moco_init == "random" else None
            self.momentum_encoder = MomentumEncoder(
                self.net, c.moco_momentum, c.moco_ema_scope, c.moco_copy_buffers, init_from=init_from
            )
            self.queue = KeyQueue(n.num_experts, n.proj_dim, c.queue_size)
        if compile:  # in place (nn.Module.compile): the state_dict keeps its plain keys, no `_orig_mod.`
            self.net.compile()
            if self.use_contrastive:
                self.momentum_encoder.compile()
        # Registered here (not in setup) so load_from_checkpoint restores them without a datamodule.
        self.register_buffer("log_prior", torch.zeros(num_classes))
        # log n_j, for NCL's zero-masked HCM logits (not shift-invariant); refilled from class_counts, so not saved.
        self.register_buffer("log_counts", torch.zeros(num_classes), persistent=False)
        # Per-expert label-loss biases b_k [K, C], LDAM margins, DRW class weights and RIDE's diversity temperatures:
        # all derived from class_counts, so not saved (a checkpoint of an older version loads unchanged).
        self.register_buffer("label_bias", torch.zeros(n.num_experts, num_classes), persistent=False)
        self.register_buffer("ldam_margin", torch.zeros(num_classes), persistent=False)
        self.register_buffer("drw_weight", torch.ones(num_classes), persistent=False)
        self.register_buffer("diversity_temp", torch.ones(num_classes), persistent=False)
        if c.reweight == "class_ema":
            self.register_buffer("class_ema", torch.ones(n.num_experts, num_classes))

        heads = ["ensemble"] + ([f"expert{k + 1}" for k in range(n.num_experts)] if n.num_experts > 1 else [])
        make = partial(
            LongTailMetrics,
            num_classes,
            many_threshold=self.eval_cfg.many_threshold,
            few_threshold=self.eval_cfg.few_threshold,
            n_bins=self.eval_cfg.n_bins,
        )
        self.val_metrics = nn.ModuleDict({h: make() for h in heads})
        self.test_metrics = nn.ModuleDict({h: make() for h in heads})
        if class_counts is not None:
            self.set_class_counts(class_counts)
        self.test_results: dict[str, float] = {}
        self.test_per_class: dict[str, list[float]] = {}
        self.test_reliability: dict[str, dict[str, list[float]]] = {}

    # ----------------------------------------------------------------------------------------------------- set-up
    def _build_net(self, in_chans: int, dist_head: bool) -> MultiExpertNet:
        n = self.net_cfg
        return MultiExpertNet(
            backbone=n.backbone,
            num_classes=self.num_classes,
            num_experts=n.num_experts,
            shared_stages=n.shared_stages,
            in_chans=in_chans,
            head=n.head,
            head_scale=n.head_scale,
            dist_head=dist_head,
            projector=self.use_contrastive,
            proj_dim=n.proj_dim,
            proj_hidden=n.proj_hidden,
            backbone_kwargs=n.backbone_kwargs,
            fuse_experts=n.fuse_experts,
            img_size=self.img_size,
        )

    def set_class_counts(self, class_counts: Sequence[int]) -> None:
        """Fill the log prior and the metrics' shot splits from the training class counts."""
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64).clamp(min=1)  # an empty class: no -inf
        self.log_prior.copy_((counts / counts.sum()).log().float())
        self.log_counts.copy_(counts.log().float())
        c = self.loss_cfg
        tau = c.label_tau if c.label_tau is not None else [c.tau] * self.num_experts
        self.label_bias.copy_(expert_label_biases(counts / counts.sum(), tau, c.label_inverse_tau, c.prior_eps).float())
        self.ldam_margin.copy_(ldam_margins(counts, c.ldam_max_m))
        self.drw_weight.copy_(drw_class_weights(counts, c.drw_beta))
        self.diversity_temp.copy_(
            ride_diversity_temperature(counts, c.diversity_temperature, c.diversity_reweight_factor)
        )
        for metrics in (self.val_metrics, self.test_metrics):
            for m in metrics.values():
                m.set_class_counts(list(class_counts))

    def setup(self, stage: str) -> None:
        self.to(memory_format=self.memory_format)

    def _layout(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def on_fit_start(self) -> None:
        if self.trainer.is_global_zero:
            log_model_size(self, getattr(self.trainer, "datamodule", None))
        if self.use_contrastive:
            global_batch = self._global_batch_size()
            if global_batch and self.loss_cfg.queue_size % global_batch:
                raise ConfigError(
                    f"model.loss.queue_size={self.loss_cfg.queue_size} must be a multiple of the global batch "
                    f"size {global_batch} (data.batch_size x processes)"
                )

    def on_train_start(self) -> None:
        for m in self.val_metrics.values():  # the sanity check must not leak into epoch-0 numbers
            m.reset()

    # ----------------------------------------------------------------------------------------------------- train
    def forward(self, x: Tensor) -> Tensor:
        """Ensemble prediction (by default the mean of the experts' label-head logits)."""
        return self.predict_logits(x)[0]

    def predict_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(ensemble [B, C], per-expert [K, B, C]) float32 logits under `model.eval.heads`."""
        out = self.net(self._layout(x))
        dist = out["dist_logits"].float() if self.heads.dist else None
        per_expert = self.heads.per_expert(out["logits"].float(), dist)
        return self.heads.ensemble(per_expert), per_expert

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x1, x2, y = batch
        loss, terms, stats = self.compute_loss(x1, x2, y, self._epoch_float())
        bs = y.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/loss_{name}": term.detach() for name, term in terms.items()}, batch_size=bs)
        self.log_dict({f"train/{name}": value for name, value in stats.items() if name != "acc"}, batch_size=bs)
        self.log("train/acc", stats["acc"], prog_bar=True, batch_size=bs)
        return loss

    def compute_loss(self, x1: Tensor, x2: Tensor, y: Tensor, epoch: float) -> tuple[Tensor, dict, dict]:
        """The objective on one batch of two views: (total loss, unweighted terms, detached statistics).

        The objective is the list `self.terms` (model.loss.terms): each name maps to one method below (TERMS) that
        calls one pure loss of `ecl_lightning.losses` and to its weight. Independent of the Trainer (`epoch`,
        fractional, drives the warm-up ramps and the deferred re-weighting), so a bare PyTorch loop
        (bench/bench_step.py) runs exactly the computation of `training_step`.
        """
        x1, x2 = self._layout(x1), self._layout(x2)
        c = self.loss_cfg
        step = _Step(x2=x2, y=y, epoch=epoch, ramp=linear_ramp(epoch, c.ramp_epochs))
        if c.mixup_alpha > 0:  # BalPoE's combiner: mixed images, target-dependent terms mixed as lam/(1 - lam)
            x1, perm, step.lam = mixup_batch(x1, c.mixup_alpha)
            step.y_b = y[perm]
            step.stats["mixup_lam"] = step.lam
        step.out = self.net(x1)
        step.stats["ramp"] = step.ramp

        terms: dict[str, Tensor] = {}  # unweighted, summed over experts
        weights: dict[str, float] = {}
        for name in self.terms:
            compute, weight = TERMS[name]
            terms[name] = compute(self, step)
            weights[name] = weight(c, step.ramp)

        loss = sum(weights[name] * term for name, term in terms.items())
        if not torch.isfinite(loss):
            bad = [name for name, term in terms.items() if not torch.isfinite(term)]
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step} (epoch {epoch:.2f}): "
                f"term(s) {bad or list(terms)}; lower model.optim.lr or check the data"
            )
        with torch.no_grad():
            step.stats["acc"] = (step.out["logits"].mean(0).argmax(-1) == y).float().mean()
        return loss, terms, step.stats

    # The terms: each takes the step's context and returns the unweighted term, summed over experts.
    def _label_term(self, step: _Step) -> Tensor:
        """Per-expert label loss CE(z_k + b_k [- s m_y], y): b_k from label_tau / label_inverse_tau (docs 4.1)."""
        c = self.loss_cfg
        drw = c.drw_epoch >= 0 and math.floor(step.epoch) >= c.drw_epoch
        margins = self.ldam_margin if c.label_loss == "ldam" else None
        weight = self.drw_weight if drw else None
        logits = step.out["logits"]
        return step.mixed(
            lambda y: expert_label_loss(logits, y, self.label_bias, margins, c.ldam_scale, weight, c.label_reduction)
        )

    def _hcm_term(self, step: _Step) -> Tensor:
        c, logits, y = self.loss_cfg, step.out["logits"], step.y
        # NCL mines on the first expert's raw logits (hcm_mining: first) and masks z + log n_j (log_counts).
        mining = logits[0] if c.hcm_mining == "first" else logits.mean(0)
        step.mined = hcm_logits(logits, self.log_counts, hcm_keep_mask(mining, y, c.hcm_k), c.tau, c.hcm_mask)
        return sum(F.cross_entropy(step.mined[k], y) for k in range(self.num_experts))

    def _kd_hcm_term(self, step: _Step) -> Tensor:
        """NCL's second NBOD, over the mined logits (computed by the hcm term, which comes first)."""
        return self._mutual_distillation_loss(step.mined)

    def _kd_term(self, step: _Step) -> Tensor:
        return self._distillation_loss(step.out["logits"], step.out.get("dist_logits"), step.y, step.stats)

    def _feat_term(self, step: _Step) -> Tensor:
        c = self.loss_cfg
        return feature_distillation_loss(step.out["feats"], c.feat_distance, c.feat_target).sum()

    def _con_term(self, step: _Step) -> Tensor:
        return self._contrastive_loss(step.out["feats"], step.x2, step.y)

    def _diversity_term(self, step: _Step) -> Tensor:
        """RIDE's distribution-aware diversity: per-class temperatures once re-weighting starts (docs 4.3)."""
        c = self.loss_cfg
        drw = c.drw_epoch >= 0 and math.floor(step.epoch) >= c.drw_epoch
        temperature = self.diversity_temp if drw else c.diversity_temperature
        return ride_diversity_loss(step.out["logits"], temperature)

    def _distillation_loss(self, logits: Tensor, dist_logits: Tensor | None, y: Tensor, stats: dict) -> Tensor:
        """Online distillation from the other experts into each expert's student head(s).

        Students: the distillation heads (where built) and, with `distill_into_label_head`, the label heads; the
        re-weighting (weights from comparing the two heads) applies to the students named by `reweight_target`.
        """
        c = self.loss_cfg
        priors = self._kd_priors()
        teachers = online_teachers(logits, priors[:, None, :], c.kd_temperature, c.detach_teacher, c.kd_target)
        total = logits.new_zeros(())
        raw_means, raw_stds = [], []
        for k in range(self.num_experts):
            w = None
            if dist_logits is not None:
                w = self._kd_weights(k, logits[k], dist_logits[k], y)
                if w is not None:
                    raw_means.append(w.mean())
                    raw_stds.append(w.std(unbiased=False))
                    w = normalize_weights(w, self._mean_across_processes(w.mean()))
                w_dist = w if c.reweight_target in ("dist", "both") else None
                total = total + kd_loss(dist_logits[k], teachers[k], priors[k], c.kd_temperature, w_dist)
            if c.distill_into_label_head:
                w_label = w if c.reweight_target in ("label", "both") else None
                total = total + kd_loss(logits[k], teachers[k], priors[k], c.kd_temperature, w_label)
        if raw_means:
            stats["kd_weight_mean"] = torch.stack(raw_means).mean().detach()
            stats["kd_weight_std"] = torch.stack(raw_stds).mean().detach()
        return total

    def _kd_priors(self) -> Tensor:
        """[K, C] log priors of the distillation space: log prior for all (kd_prior: train), or each expert's own
        label bias b_k (kd_prior: expert), so experts with different target priors meet in the training posterior."""
        if self.loss_cfg.kd_prior == "expert":
            return self.label_bias
        return self.log_prior.expand(self.num_experts, -1)

    def _mutual_distillation_loss(self, mined: Tensor) -> Tensor:
        """Distillation among the experts' mined logits [K, B, C] (the prior is already in them), as for `kd`."""
        c = self.loss_cfg
        no_prior = mined.new_zeros(())
        teachers = online_teachers(mined, no_prior, c.kd_temperature, c.detach_teacher, c.kd_target)
        return sum(kd_loss(mined[k], teachers[k], no_prior, c.kd_temperature) for k in range(self.num_experts))

    def _kd_weights(self, k: int, z: Tensor, s: Tensor, y: Tensor) -> Tensor | None:
        """Per-sample distillation weights of expert k (before normalisation); None for reweight=none."""
        c, lp = self.loss_cfg, self._kd_priors()[k]
        if c.reweight == "none":
            return None
        if c.reweight == "class_ema":
            z_all, s_all, y_all = (self._gather_batch(t.detach()) for t in (z, s, y))
            with torch.no_grad():
                self.class_ema[k] = class_ema_update(
                    self.class_ema[k], z_all, s_all, y_all, lp, c.class_ema_momentum, c.kd_temperature
                )
            return class_ema_weights(self.class_ema[k], y, c.reweight_min, c.reweight_max)
        return distillation_weights(
            z, s, y, lp, c.reweight, c.reweight_gamma, c.reweight_min, c.reweight_max, c.kd_temperature
        )

    def _contrastive_loss(self, feats: Tensor, x2: Tensor, y: Tensor) -> Tensor:
        """MoCo (or SupCon) per expert: queries from view 1, keys of view 2 from the momentum encoder, the queue."""
        c = self.loss_cfg
        q = self.net.project(feats)
        with torch.no_grad():
            if c.moco_update == "before_keys":  # MoCo; NCL updates after computing the keys (moco_update: after_keys)
                self.momentum_encoder.update(self.net)
            keys = self.momentum_encoder(x2)
            if c.moco_update == "after_keys":
                self.momentum_encoder.update(self.net)
        queue = self.queue.keys.clone()
        if c.contrastive == "moco":
            loss = sum(moco_loss(q[k], keys[k], queue[k], c.con_temperature) for k in range(self.num_experts))
        else:
            queue_labels = self.queue.labels.clone()
            loss = sum(
                supcon_loss(q[k], keys[k], queue[k], y, queue_labels, c.con_temperature)
                for k in range(self.num_experts)
            )
        # Keys of every process enter every queue (MoCo's concat_all_gather): gather along the batch dimension.
        all_keys = concat_all_gather(keys.float(), dim=1)
        self.queue.enqueue(all_keys, concat_all_gather(y))
        return loss

    # -------------------------------------------------------------------------------------------------- evaluate
    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics)

    def test_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        """Updates the test metrics; returns the ensemble's predictions for callbacks (no second forward pass)."""
        return self._eval_step(batch, self.test_metrics)

    def _eval_step(self, batch, metrics: nn.ModuleDict) -> dict[str, Tensor]:
        x, y = batch
        ensemble, logits = self.predict_logits(x)
        metrics["ensemble"].update(ensemble, y)
        if self.num_experts > 1:
            for k in range(self.num_experts):
                metrics[f"expert{k + 1}"].update(logits[k], y)
        return {"preds": ensemble.argmax(-1).detach(), "target": y}

    def on_validation_epoch_end(self) -> None:
        results = self._log_metrics("val", self.val_metrics)
        if not self.trainer.sanity_checking and "val/acc" in results and self.trainer.is_global_zero:
            splits = " ".join(
                f"{s}={100 * float(results[f'val/acc_{s}']):.1f}" for s in SPLITS if f"val/acc_{s}" in results
            )
            log.info("epoch %d: val acc %.2f %% (%s)", self.current_epoch, 100 * float(results["val/acc"]), splits)

    def on_test_epoch_end(self) -> None:
        results = self._log_metrics("test", self.test_metrics, keep_per_class=True)
        self.test_results = {k: float(v) for k, v in results.items()}

    def _log_metrics(self, stage: str, metrics: nn.ModuleDict, keep_per_class: bool = False) -> dict[str, Tensor]:
        results: dict[str, Tensor] = {}
        for head, metric in metrics.items():
            prefix = f"{stage}/" if head == "ensemble" else f"{stage}/{head}/"
            for key, value in metric.compute().items():
                results[prefix + key] = value.float()
            if keep_per_class:
                self.test_per_class[head] = metric.synced_per_class_accuracy().tolist()
                self.test_reliability[head] = metric.reliability()
            metric.reset()
        count = results.get(f"{stage}/count")
        if count is not None:  # samples evaluated by all processes together (the metric states are summed)
            results[f"{stage}/num_samples"] = count
            check_num_samples(self.trainer, stage, int(count))
        # Values are already reduced across processes by the metrics themselves.
        self.log_dict(results, sync_dist=False)
        return results

    # --------------------------------------------------------------------------------------------------- resume
    # Lightning checkpoints weights (queues and momentum encoder are buffers/modules), optimiser, scheduler and loop
    # state; the loss ramps derive from global_step. The RNG states (next epoch's shuffling, augmentations, loader
    # worker seeds) are added here, one entry per process (ecl_lightning.rng_state).
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_states"] = gather_rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_rng_states(self._trainer, checkpoint.get("rng_states"))

    # ------------------------------------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        global_batch = self._global_batch_size()
        lr = scaled_lr(self.optim_cfg, global_batch)
        o = self.optim_cfg
        rule = f"{o.lr:g} x {global_batch} / {o.base_batch_size}" if o.base_batch_size and global_batch else "unscaled"
        if self.trainer.is_global_zero:
            log.info(
                "Optimiser %s: global batch %s (data.batch_size x %d processes x %d accumulation), lr %.6g (%s)",
                o.name, global_batch, self.trainer.world_size, self.trainer.accumulate_grad_batches, lr, rule,
            )  # fmt: skip
        optimizer = build_optimizer(self.net.parameters(), self.optim_cfg, lr)
        total = int(self.trainer.estimated_stepping_batches)
        max_epochs = self.trainer.max_epochs or 0
        steps_per_epoch = total / max_epochs if max_epochs > 0 else max(self._steps_per_epoch(), 1)
        schedule = partial(
            lr_factor, steps_per_epoch=steps_per_epoch, total_steps=total, cfg=self.schedule_cfg, base_lr=lr
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -------------------------------------------------------------------------------------------------- helpers
    def _steps_per_epoch(self) -> int:
        batches = self.trainer.num_training_batches
        if not isinstance(batches, int) or batches == float("inf"):
            return 1
        return math.ceil(batches / self.trainer.accumulate_grad_batches)

    def _epoch_float(self) -> float:
        """Training progress in (fractional) epochs, derived from the global step so a resume continues the ramps."""
        return self.global_step / max(self._steps_per_epoch(), 1)

    def _global_batch_size(self) -> int | None:
        dm = getattr(self.trainer, "datamodule", None)
        batch = getattr(dm, "batch_size", None)
        if batch is None:
            return None
        return int(batch) * self.trainer.world_size * self.trainer.accumulate_grad_batches

    @property
    def _distributed(self) -> bool:
        """Attached to a Trainer with several processes (False in a bare loop: compute_loss runs without one)."""
        return self._trainer is not None and self._trainer.world_size > 1

    def _mean_across_processes(self, value: Tensor) -> Tensor:
        if self._distributed:
            return self._trainer.strategy.reduce(value.detach(), reduce_op="mean")
        return value.detach()

    def _gather_batch(self, t: Tensor) -> Tensor:
        if self._distributed:
            return self.all_gather(t).flatten(0, 1)
        return t


@dataclass
class _Step:
    """What the terms of one training step share: the network's outputs, the targets, progress and statistics."""

    x2: Tensor
    y: Tensor
    epoch: float
    ramp: float
    out: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    y_b: Tensor | None = None  # mixup's second targets (y[perm]) and weight lam
    lam: float = 1.0
    mined: Tensor | None = None  # the HCM logits, shared by the hcm and kd_hcm terms

    def mixed(self, loss: Callable[[Tensor], Tensor]) -> Tensor:
        """loss(y), or under mixup lam * loss(y) + (1 - lam) * loss(y[perm])."""
        if self.y_b is None:
            return loss(self.y)
        return self.lam * loss(self.y) + (1.0 - self.lam) * loss(self.y_b)


# A term's name (model.loss.terms) -> (its method on ECLModule, its weight given the loss config and the ramp).
TERMS: dict[str, tuple[Callable[[ECLModule, _Step], Tensor], Callable[[LossConfig, float], float]]] = {
    "label": (ECLModule._label_term, lambda c, ramp: 1.0),
    "hcm": (ECLModule._hcm_term, lambda c, ramp: c.hcm_weight),
    "kd_hcm": (ECLModule._kd_hcm_term, lambda c, ramp: ramp * c.hcm_kd_weight),
    "kd": (ECLModule._kd_term, lambda c, ramp: ramp * c.kd_weight),
    "feat": (ECLModule._feat_term, lambda c, ramp: ramp * c.feat_weight),
    "con": (ECLModule._con_term, lambda c, ramp: c.con_weight),
    "diversity": (ECLModule._diversity_term, lambda c, ramp: c.diversity_weight),
}
