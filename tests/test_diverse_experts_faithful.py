"""`model=sade`, `model=balpoe`, `model=ride` and `model=ecl_sade` against the released objectives, term by term.

Each reference below is written from the formula of the released file named in its docstring (not from our code),
in float64, one expert (and where it matters one sample) at a time; our loss, composed from the config as a user
runs it, must agree to 1e-6 on fixed logits, and so must its gradient.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from ecl_lightning.config import ConfigError, LossConfig
from ecl_lightning.module import ECLModule
from ecl_lightning.validate import check_config
from helpers import FixedLogits, compose_cfg, model_cfg, run_cli

K, B, C = 3, 16, 100
DIVERSE = ["sade", "balpoe", "ride", "ecl_sade"]
EXPERIMENTS = ["fmnist_lt", "cifar10_lt", "cifar100_lt", "imagenet_lt", "places_lt", "inat2018", "image_folder"]
EPS = 1e-9


def cifar100_lt_counts(n_max: int = 500, imbalance: float = 100.0) -> list[int]:
    return [int(n_max * (1 / imbalance) ** (i / (C - 1))) for i in range(C)]


def shuffled_counts(seed: int) -> list[int]:
    """CIFAR-100-LT's counts in a random class order, so a rule that assumes sorted classes fails."""
    counts = cifar100_lt_counts()
    order = torch.randperm(C, generator=torch.Generator().manual_seed(seed)).tolist()
    return [counts[i] for i in order]


def module_for(name: str, counts: list[int], *overrides: str) -> ECLModule:
    return ECLModule(num_classes=C, class_counts=counts, in_chans=1, **model_cfg(name, *overrides))


def run_loss(module: ECLModule, z: torch.Tensor, y: torch.Tensor, epoch: float = 0.0, s: torch.Tensor | None = None):
    module.net = FixedLogits(z, s)
    x = torch.zeros(y.shape[0], 1, 8, 8)
    return module.compute_loss(x, x, y, epoch=epoch)


def ce(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy, sample by sample; with class weights the weighted mean sum w_y l / sum w_y."""
    losses = torch.stack([-logits[b].log_softmax(-1)[y[b]] for b in range(y.shape[0])])
    if weight is None:
        return losses.mean()
    w = weight[y]
    return (w * losses).sum() / w.sum()


def prior_of(counts: list[int]) -> torch.Tensor:
    n = torch.tensor(counts, dtype=torch.float64)
    return n / n.sum()


def sade_inverse_prior(prior: torch.Tensor) -> torch.Tensor:
    """SADE model/loss.py lines 255-261: sort the prior, then give the class of rank r the value at rank C - 1 - r."""
    values = sorted(prior.tolist())
    ranks = {c: r for r, c in enumerate(sorted(range(len(prior)), key=lambda c: prior[c].item()))}
    return torch.tensor([values[len(prior) - 1 - ranks[c]] for c in range(len(prior))], dtype=torch.float64)


def sade_reference(z: torch.Tensor, y: torch.Tensor, counts: list[int], tau: float = 2.0) -> torch.Tensor:
    """SADE model/loss.py, DiverseExpertLoss.forward (lines 263-286): forward + balanced + inverse softmax, summed."""
    z = z.double()
    prior = prior_of(counts)
    log_p = (prior + EPS).log()
    log_inv = (sade_inverse_prior(prior) + EPS).log()
    return ce(z[0], y) + ce(z[1] + log_p, y) + ce(z[2] + log_p - tau * log_inv, y)


def balpoe_reference(z: torch.Tensor, y: torch.Tensor, counts: list[int], taus=(0.0, 1.0, 2.0)) -> torch.Tensor:
    """BalPoE model/loss.py, BSExpertLoss.forward (lines 24-51): mean over experts of CE(z_k + tau_k log(prior))."""
    z = z.double()
    log_p = (prior_of(counts) + EPS).log()
    return sum(ce(z[k] + taus[k] * log_p, y) for k in range(len(taus))) / len(taus)


def ride_reference(z: torch.Tensor, y: torch.Tensor, counts: list[int], epoch_1based: int) -> torch.Tensor:
    """RIDE model/loss.py, RIDELoss (lines 124-247): per expert the LDAM CE (class-weighted after reweight_epoch 160)
    plus -0.2 * T_mean^2 * KL(softmax(mean / T) || softmax(z_k / T)) (batchmean), reweight_factor 0.05."""
    z = z.double()
    n = torch.tensor(counts, dtype=torch.float64)
    m = 1.0 / n.sqrt().sqrt()
    m = m * (0.5 / m.max())
    s = 30.0
    reweighting = epoch_1based > 160
    weight = None
    temperature = torch.ones(C, dtype=torch.float64)
    if reweighting:
        effective = 1.0 - 0.9999**n
        weight = (1.0 - 0.9999) / effective
        weight = weight / weight.sum() * C
        p = n / n.sum()
        w = C * p * 0.05 + 1 - 0.05
        temperature = w / w.max()
    mean_logits = z.mean(0)
    total = torch.zeros((), dtype=torch.float64)
    for k in range(K):
        margin_logits = z[k].clone()
        for b in range(B):
            margin_logits[b, y[b]] = z[k, b, y[b]] - s * m[y[b]]
        total = total + ce(margin_logits, y, weight)
        t_mean = temperature.mean()
        log_q = (z[k] / temperature).log_softmax(-1)
        teacher = (mean_logits / temperature).softmax(-1).detach()
        kl = (teacher * (teacher.log() - log_q)).sum() / B
        total = total - 0.2 * t_mean * t_mean * kl
    return total


def assert_matches(loss: torch.Tensor, z: torch.Tensor, reference: torch.Tensor) -> None:
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6, abs=1e-6)
    (grad,) = torch.autograd.grad(loss, z)
    (ref_grad,) = torch.autograd.grad(reference, z)
    assert torch.allclose(grad.double(), ref_grad.double(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(2))
def test_sade_matches_its_released_diverse_expert_loss(seed):
    torch.manual_seed(seed)
    counts = shuffled_counts(seed)
    z, y = (3 * torch.randn(K, B, C)).requires_grad_(), torch.randint(0, C, (B,))
    loss, terms, _ = run_loss(module_for("sade", counts), z, y)
    assert list(terms) == ["label"]
    assert_matches(loss, z, sade_reference(z, y, counts))


def test_sade_inverse_prior_is_the_mirrored_profile_not_one_over_the_prior():
    from ecl_lightning.losses import inverse_prior

    prior = prior_of([50, 5, 20, 1, 10]).float()
    assert torch.equal(inverse_prior(prior), sade_inverse_prior(prior.double()).float())
    assert inverse_prior(prior).sum().item() == pytest.approx(1.0, rel=1e-6)
    assert inverse_prior(prior)[0] == prior.min() and inverse_prior(prior)[3] == prior.max()


@pytest.mark.parametrize("seed", range(2))
def test_balpoe_matches_its_released_bs_expert_loss(seed):
    torch.manual_seed(seed)
    counts = shuffled_counts(seed)
    z, y = (3 * torch.randn(K, B, C)).requires_grad_(), torch.randint(0, C, (B,))
    loss, terms, _ = run_loss(module_for("balpoe", counts, "model.loss.mixup_alpha=0"), z, y)
    assert list(terms) == ["label"]
    assert_matches(loss, z, balpoe_reference(z, y, counts))


def test_balpoe_mixup_mixes_the_images_and_the_two_targets_losses():
    """BalPoE utils/combiner.py, `mixup` (lines 53-99): lam ~ Beta(alpha, alpha), one permutation, the image
    lam x + (1 - lam) x[perm] and the loss lam L(y) + (1 - lam) L(y[perm])."""
    torch.manual_seed(0)
    counts = shuffled_counts(0)
    module = module_for("balpoe", counts)
    assert module.loss_cfg.mixup_alpha == 0.4
    seen = {}

    class Recording(FixedLogits):
        def forward(self, x):
            seen["x"] = x
            return super().forward(x)

    z, y = (3 * torch.randn(K, B, C)).requires_grad_(), torch.randint(0, C, (B,))
    x = torch.randn(B, 1, 8, 8)
    module.net = Recording(z)
    torch.manual_seed(5)
    loss, _, stats = module.compute_loss(x, x, y, epoch=0.0)
    torch.manual_seed(5)  # the same draws, made here as the combiner makes them
    lam = float(torch.distributions.Beta(torch.tensor(0.4), torch.tensor(0.4)).sample())
    perm = torch.randperm(B)
    assert stats["mixup_lam"] == pytest.approx(lam)
    assert torch.allclose(seen["x"], lam * x + (1 - lam) * x[perm])
    reference = lam * balpoe_reference(z, y, counts) + (1 - lam) * balpoe_reference(z, y[perm], counts)
    assert_matches(loss, z, reference)


@pytest.mark.parametrize("epoch_0based", [10, 159, 160, 190])
def test_ride_matches_its_released_loss_before_and_after_reweighting(epoch_0based):
    torch.manual_seed(epoch_0based)
    counts = shuffled_counts(epoch_0based)
    z, y = (3 * torch.randn(K, B, C)).requires_grad_(), torch.randint(0, C, (B,))
    module = module_for("ride", counts)
    loss, terms, _ = run_loss(module, z, y, epoch=epoch_0based + 0.5)
    assert list(terms) == ["label", "diversity"]
    # RIDE's trainer counts epochs from 1 (base/base_trainer.py line 75): our 0-based epoch e is its e + 1.
    assert_matches(loss, z, ride_reference(z, y, counts, epoch_1based=epoch_0based + 1))


def test_the_reweighting_epoch_changes_ride_s_loss_on_this_batch():
    """So the test above can tell 159 from 160 apart (an off-by-one in drw_epoch would fail it)."""
    torch.manual_seed(0)
    counts = shuffled_counts(0)
    z, y = 3 * torch.randn(K, B, C), torch.randint(0, C, (B,))
    before = ride_reference(z, y, counts, epoch_1based=160).item()
    after = ride_reference(z, y, counts, epoch_1based=161).item()
    assert abs(before - after) > 1e-3 * abs(before)


def test_ecl_sade_distils_in_each_expert_s_own_prior_space():
    """ECL on SADE's experts: SADE's label terms, plus the teacher mean_{j != k} softmax(z_j + b_j) and the student
    softmax(s_k + b_k), b_k expert k's label bias, with ECL's ratio re-weighting in the same space (T = 1)."""
    torch.manual_seed(3)
    counts = shuffled_counts(3)
    module = module_for("ecl_sade", counts, "model.loss.contrastive=none", "model.loss.feat_weight=0")
    # scale 1.5: with much larger logits both true-class probabilities of the ratio rule can underflow in float32
    z, s = (1.5 * torch.randn(K, B, C)).requires_grad_(), 1.5 * torch.randn(K, B, C)
    y = torch.randint(0, C, (B,))
    loss, terms, _ = run_loss(module, z, y, epoch=100.0, s=s)
    assert list(terms) == ["label", "kd"]
    prior = prior_of(counts)
    log_p, log_inv = (prior + EPS).log(), (sade_inverse_prior(prior) + EPS).log()
    biases = [torch.zeros(C, dtype=torch.float64), log_p, log_p - 2 * log_inv]
    zd, sd = z.double(), s.double()
    kd = torch.zeros((), dtype=torch.float64)
    for k in range(K):
        teacher = sum((zd[j] + biases[j]).softmax(-1) for j in range(K) if j != k).detach() / (K - 1)
        log_q = (sd[k] + biases[k]).log_softmax(-1)
        p_y = (zd[k] + biases[k]).softmax(-1).detach()[torch.arange(B), y]
        q_y = log_q.exp().detach()[torch.arange(B), y]
        w = (p_y / q_y.clamp_min(1e-8)).clamp(0.1, 10.0)  # ECL's ratio rule (docs/method.md 2.3)
        w = w / w.mean()
        kd = kd + (w * (teacher * (teacher.log() - log_q)).sum(-1)).mean()
    assert terms["kd"].item() == pytest.approx(kd.item(), rel=1e-5)
    assert terms["label"].item() == pytest.approx(sade_reference(z, y, counts).item(), rel=1e-6)
    assert loss.item() == pytest.approx((sade_reference(z, y, counts) + 0.6 * kd).item(), rel=1e-5)
    # kd_prior: train distils every expert in the training prior instead: a different value here
    train_space = module_for("ecl_sade", counts, "model.loss.contrastive=none", "model.loss.feat_weight=0",
                             "model.loss.kd_prior=train")  # fmt: skip
    _, other, _ = run_loss(train_space, z.detach(), y, epoch=100.0, s=s)
    assert abs(other["kd"].item() - kd.item()) > 1e-3 * kd.item()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=sade", "model.loss.label_tau=[0.0,1.0]"], "label_tau has 2 values, expected one per expert"),
        (["model=ride", "model.loss.terms=[label,kd]"], "model.loss.terms lists 'kd' but model.loss.kd_weight=0"),
        (["model=ecl", "model.loss.terms=[label,bogus]"], "unknown: ['bogus']"),
        (["model=ecl", "model.loss.mixup_alpha=0.4"], "mixup_alpha=0.4 mixes the label and diversity terms only"),
        (["model=ride", "model.loss.drw_epoch=-3"], "model.loss.drw_epoch=-3 must be -1"),
        (["model=sade", "model.loss.label_loss=focal"], "model.loss.label_loss='focal' is not one of"),
    ],
)
def test_wrong_diverse_expert_values_are_named(overrides, message):
    model, *rest = overrides
    with pytest.raises(ConfigError) as err:
        module_for(model.removeprefix("model="), cifar100_lt_counts(), *rest)
    assert message in str(err.value)


def test_the_ensemble_of_balpoe_is_balanced_by_the_mean_of_its_lambdas():
    """BalPoE's claim (mean lambda = 1, as model=balpoe's label_tau): if expert k fits softmax(z_k + lambda_k log p)
    = the training posterior exactly, the mean of the experts' raw logits (our ensemble) is the balanced one."""
    torch.manual_seed(0)
    counts = cifar100_lt_counts()
    module = module_for("balpoe", counts)
    lambdas = module.loss_cfg.label_tau
    assert sum(lambdas) / len(lambdas) == pytest.approx(1.0)
    log_prior = module.log_prior.double()
    balanced = torch.randn(B, C, dtype=torch.float64)  # log p_bal(y|x)
    z = torch.stack([balanced + (1.0 - lam) * log_prior for lam in lambdas]).float()
    module.net = FixedLogits(z)
    ensemble, _ = module.predict_logits(torch.zeros(B, 1, 8, 8))
    assert torch.allclose(ensemble.log_softmax(-1).double(), balanced.log_softmax(-1), atol=1e-5)
    assert not torch.allclose(z[0].log_softmax(-1).double(), balanced.log_softmax(-1), atol=1e-2)


@pytest.mark.parametrize("model", DIVERSE)
def test_each_diverse_method_composes_and_passes_the_checks_with_every_experiment(model, tmp_path):
    for experiment in EXPERIMENTS:
        cfg = compose_cfg([f"experiment={experiment}", f"model={model}"], tmp_path)
        check_config(cfg)  # the typed checks a run makes before any data is read
        loss = LossConfig(**OmegaConf.to_container(cfg.model.loss, resolve=True))
        terms = loss.objective_terms(cfg.model.net.num_experts, loss.con_weight > 0 and loss.contrastive != "none")
        assert terms[0] == "label" and ("diversity" in terms) == (model == "ride"), (experiment, terms)
        assert ("kd" in terms) == (model == "ecl_sade"), (experiment, terms)


# The released recipes (conf/recipe/<experiment>_<model>.yaml), value by value, from the files they cite.
RELEASED = {
    ("cifar100_lt", "sade"): {  # SADE configs/config_cifar100_ir100_sade.json
        "data.batch_size": 128, "trainer.max_epochs": 200, "model.optim.lr": 0.1, "model.optim.weight_decay": 5e-4,
        "model.schedule.milestones": [160, 180], "model.schedule.gamma": 0.1, "model.schedule.warmup_epochs": 5,
        "model.net.backbone": "resnet32", "model.net.backbone_kwargs.widths": [16, 24, 48],
        "model.loss.label_inverse_tau": [0.0, 0.0, -2.0],
    },
    ("cifar100_lt", "balpoe"): {  # BalPoE configs/mixup/standard_training/config_cifar100_ir100_bs-experts.json
        "data.batch_size": 128, "trainer.max_epochs": 200, "model.optim.lr": 0.1, "model.optim.weight_decay": 5e-4,
        "model.schedule.milestones": [160, 180], "model.schedule.gamma": 0.1, "model.net.backbone_kwargs": {},
        "model.loss.label_tau": [0.0, 1.0, 2.0], "model.loss.mixup_alpha": 0.4,
    },
    ("cifar100_lt", "ride"): {  # RIDE configs/config_imbalance_cifar100_ride.json
        "data.batch_size": 128, "trainer.max_epochs": 200, "model.optim.weight_decay": 5e-4,
        "model.schedule.milestones": [160, 180], "model.schedule.gamma": 0.01, "model.loss.drw_epoch": 160,
        "model.loss.diversity_weight": -0.2, "model.net.backbone_kwargs.widths": [16, 24, 48],
    },
    ("imagenet_lt", "sade"): {  # SADE configs/config_imagenet_lt_resnext50_sade.json
        "data.batch_size": 64, "trainer.max_epochs": 180, "model.optim.lr": 0.025, "model.optim.base_batch_size": 64,
        "model.optim.weight_decay": 5e-4, "model.schedule.name": "cosine", "model.schedule.warmup_epochs": 0,
        "model.schedule.min_lr": 0.0, "model.net.backbone_kwargs.stage_planes": [64, 128, 192, 384],
        "model.net.shared_stages": 2, "model.net.head_scale": 30.0,
    },
    ("imagenet_lt", "balpoe"): {  # BalPoE configs/mixup/standard_training/config_imagenet_lt_resnext50_bs-experts.json
        "trainer.max_epochs": 180, "model.optim.lr": 0.025, "model.optim.base_batch_size": 128,
        "model.schedule.name": "cosine", "model.loss.label_tau": [0.0, 1.25, 2.5], "model.loss.mixup_alpha": 0.3,
        "model.net.backbone_kwargs": {},
    },
    ("imagenet_lt", "ride"): {  # RIDE configs/config_imagenet_lt_resnext50_ride.json
        "data.batch_size": 256, "trainer.max_epochs": 100, "model.optim.lr": 0.1, "model.optim.weight_decay": 2e-4,
        "model.schedule.name": "multistep", "model.schedule.milestones": [60, 80], "model.schedule.gamma": 0.1,
        "model.loss.drw_epoch": 80, "model.loss.diversity_reweight_factor": 0.02,
        "model.net.backbone_kwargs.stage_planes": [64, 128, 192, 384],
    },
}  # fmt: skip


@pytest.mark.parametrize(("experiment", "model"), list(RELEASED))
def test_the_recipes_are_the_released_configs(experiment, model, tmp_path):
    cfg = compose_cfg([f"experiment={experiment}", f"model={model}"], tmp_path)
    for key, expected in RELEASED[experiment, model].items():
        value = OmegaConf.select(cfg, key)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        assert value == pytest.approx(expected) if isinstance(expected, float) else value == expected, key


def test_the_cli_prints_the_composed_recipe(tmp_path):
    proc = run_cli(["experiment=imagenet_lt", "model=sade", "--cfg", "job"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    job = OmegaConf.create(proc.stdout)
    assert list(job.model.net.backbone_kwargs.stage_planes) == [64, 128, 192, 384]
    assert job.model.loss.terms == ["label"] and job.model.optim.lr == 0.025
