"""GPU-side augmentation (data/transforms/gpu.py) against the CPU transforms: exact op kernels, parameter distributions,
pipeline statistics, the DataModule hook and a training run with data.gpu_augment=true.

Statistical checks compare two means with a bound of 4 standard errors (two-sided chance of a false failure about
6e-5; the seeds are fixed anyway), so a wrong probability, range or op fails them but sampling noise does not.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ecl_lightning.data import CIFARLTDataModule, Cutout, FashionMNISTLTDataModule, cifar_transforms, fmnist_transforms
from ecl_lightning.data.transforms import CIFAR_MEAN, CIFAR_STD, FMNIST_MEAN, FMNIST_STD
from ecl_lightning.data.transforms import gpu as G
from ecl_lightning.data.transforms import recipes as R
from ecl_lightning.train import train
from helpers import Z, assert_close_means, compose_cfg, index_grid, tiny_overrides
from helpers import crop_boxes as boxes
from helpers import sample_images as images


# ---- op kernels: identical to torchvision's for given parameters ---------------------------------------------------
def test_colour_ops_match_torchvision_per_sample_factors():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    factors = torch.tensor([0.6, 0.8, 1.0, 1.2, 1.4, 0.0])
    for name in ("brightness", "contrast", "saturation"):
        expected = torch.stack([getattr(F, f"adjust_{name}")(xi, float(f)) for xi, f in zip(x, factors, strict=True)])
        torch.testing.assert_close(getattr(G, f"adjust_{name}")(x, factors), expected)
    hues = torch.tensor([-0.5, -0.1, 0.0, 0.03, 0.1, 0.5])
    expected = torch.stack([F.adjust_hue(xi, float(h)) for xi, h in zip(x, hues, strict=True)])
    torch.testing.assert_close(G.adjust_hue(x, hues), expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("antialias", [False, True])  # the CPU path uses antialias=True; crops only upsample
def test_resized_crop_matches_torchvision(antialias):
    x = torch.rand(6, 3, 32, 32)
    top, left = torch.tensor([0, 3, 10, 0, 5, 1]), torch.tensor([0, 2, 0, 7, 12, 1])
    h, w = torch.tensor([32, 20, 15, 8, 27, 31]), torch.tensor([32, 25, 30, 9, 14, 12])
    expected = torch.stack(
        [
            F.resized_crop(xi, int(t), int(lf), int(hi), int(wi), [32, 32], antialias=antialias)
            for xi, t, lf, hi, wi in zip(x, top, left, h, w, strict=True)
        ]
    )
    torch.testing.assert_close(G.resized_crop(x, top, left, h, w, 32), expected)


def test_gaussian_blur_matches_torchvision_for_a_fixed_sigma():
    x = torch.rand(4, 3, 32, 32)
    blurred = G.GaussianBlur(3, sigma=(0.7, 0.7), p=1.0)(x)
    torch.testing.assert_close(blurred, F.gaussian_blur(x, [3, 3], [0.7, 0.7]))


def test_autoaugment_ops_treat_each_image_of_a_batch_separately():
    """Every (op, magnitude) of the CIFAR10 policy: on a batch == on each image (so grouping is exact)."""
    aa = G.AutoAugment()
    x = images("cifar", 6)
    ops = {(name, idx) for sub in aa.sub_policies for name, _, idx in sub}
    for name, idx in sorted(ops, key=str):
        fn, signed = aa.reference._AUGMENTATION_SPACE[name]
        magnitudes = fn(10, 32, 32)
        magnitude = float(magnitudes[idx]) if magnitudes is not None else 0.0
        for m in (magnitude, -magnitude) if signed else (magnitude,):
            batched = aa.apply_op(x, name, m)
            single = torch.stack([aa.apply_op(xi[None], name, m)[0] for xi in x])
            assert torch.equal(batched, single), (name, m)


def test_autoaugment_keeps_samples_in_place():
    """Two sub-policies (invert always / never): every output is its own image, inverted or not, both occur."""
    torch.manual_seed(0)
    aa = G.AutoAugment()
    aa.reference._policies = [(("Invert", 1.0, None), ("Invert", 0.0, None)), (("Invert", 0.0, None),) * 2]
    x = images("cifar", 64)
    out = aa(x)
    inverted = (out == 255 - x).flatten(1).all(1)
    assert torch.equal(out[~inverted], x[~inverted])
    assert 0 < inverted.sum() < 64


def test_autoaugment_signs_are_random_per_sample():
    """TranslateX by +-14 px of a white image: the black band is on the left or the right, half the time each."""
    torch.manual_seed(0)
    n = 2000
    aa = G.AutoAugment()
    aa.reference._policies = [(("TranslateX", 1.0, 9), ("Invert", 0.0, None))]
    out = aa(torch.full((n, 1, 8, 32), 255, dtype=torch.uint8))
    left, right = (out[:, 0, :, 0] == 0).all(1), (out[:, 0, :, -1] == 0).all(1)
    assert torch.equal(left, ~right)
    assert abs(left.float().mean().item() - 0.5) < Z * (0.25 / n) ** 0.5


def test_autoaugment_statistics_match_cpu():
    torch.manual_seed(0)
    n = 1000
    x = images("cifar", n)
    cpu = torch.stack([v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)(xi) for xi in x]).float()
    gpu = G.AutoAugment()(x).float()
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    assert_close_means(cpu.mean((2, 3)), gpu.mean((2, 3)), paired=True)
    assert_close_means(cpu.pow(2).mean((2, 3)), gpu.pow(2).mean((2, 3)), paired=True)
    # Share of images left unchanged (no op drawn, or ops without effect), about 1/4 for this policy.
    unchanged_cpu, unchanged_gpu = ((v == x).flatten(1).all(1).float()[:, None] for v in (cpu.byte(), gpu.byte()))
    assert_close_means(unchanged_cpu, unchanged_gpu)


# ---- parameter distributions ------------------------------------------------------------------------------------
def test_flip_happens_half_the_time():
    torch.manual_seed(0)
    n = 4000
    x = torch.arange(8.0).expand(n, 1, 2, 8)
    out = G.RandomHorizontalFlip()(x)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert torch.equal(out[~flipped], x[~flipped])
    assert abs(flipped.float().mean().item() - 0.5) < Z * (0.25 / n) ** 0.5  # 0.032


@pytest.mark.parametrize(("size", "padding"), [(28, 2), (32, 4)])
def test_crop_offsets_cover_the_range_uniformly(size, padding):
    """Pixel values encode their position, so each output window gives its offset; all offsets occur."""
    torch.manual_seed(0)
    n = 2000
    x = (torch.arange(size * size, dtype=torch.float32) + 1).view(1, 1, size, size).expand(n, 1, size, size)
    out = G.RandomCrop(size, padding)(x)
    centre = out[:, 0, size // 2, size // 2].long() - 1  # always inside the image: padding < size / 2
    top, left = centre // size - size // 2 + padding, centre % size - size // 2 + padding
    padded = F.pad(x, [padding] * 4)
    for i in range(0, n, 97):  # the whole window is the padded image at that offset
        assert torch.equal(out[i], padded[i, :, top[i] : top[i] + size, left[i] : left[i] + size])
    offsets = set(zip(top.tolist(), left.tolist(), strict=True))
    assert offsets == {(t, lf) for t in range(2 * padding + 1) for lf in range(2 * padding + 1)}
    se = ((((2 * padding + 1) ** 2 - 1) / 12) / n) ** 0.5  # discrete uniform on 0..2p
    assert abs(top.float().mean() - padding) < Z * se and abs(left.float().mean() - padding) < Z * se


def erased_fraction(out: torch.Tensor) -> torch.Tensor:
    return (out == 0).flatten(1).float().mean(1, keepdim=True)


def test_erasing_area_distribution_matches_torchvision():
    torch.manual_seed(0)
    n = 4000
    ones = torch.ones(n, 1, 28, 28)
    cpu = torch.stack([v2.RandomErasing(value=0.0)(xi) for xi in ones])
    gpu = G.RandomErasing(value=0.0)(ones)
    f_cpu, f_gpu = erased_fraction(cpu), erased_fraction(gpu)
    assert_close_means(f_cpu, f_gpu)  # mean erased fraction, about 0.5 x 0.17
    assert_close_means((f_cpu > 0).float(), (f_gpu > 0).float())  # share erased, p = 0.5
    for out in gpu[:50]:  # one rectangle, smaller than the image
        mask = out[0] == 0
        rows, cols = mask.any(1).sum().item(), mask.any(0).sum().item()
        assert mask.sum().item() == rows * cols and rows < 28 and cols < 28


def test_cutout_matches_cpu():
    torch.manual_seed(0)
    n = 3000
    ones = torch.ones(n, 3, 32, 32)
    cpu = torch.stack([Cutout(16)(xi) for xi in ones])
    assert_close_means(erased_fraction(cpu), erased_fraction(G.Cutout(16)(ones)))


def test_resized_crop_boxes_match_torchvision():
    """Channels hold the row and column index: bilinear keeps them linear, so min/max give each sampled box."""
    torch.manual_seed(0)
    n = 2000
    x = index_grid(n, 32)

    cpu = torch.stack([v2.RandomResizedCrop(32, scale=(0.2, 1.0), antialias=True)(xi) for xi in x])
    gpu = G.RandomResizedCrop(32, scale=(0.2, 1.0))(x)
    b_cpu, b_gpu = boxes(cpu), boxes(gpu)
    assert b_gpu[:, 2].min() >= 0.15 and b_gpu[:, 2].max() <= 1.0  # area in scale (rounding of sides aside)
    assert_close_means(b_cpu, b_gpu)  # top, left, area fraction, log aspect


def test_colour_ops_apply_with_their_probabilities():
    torch.manual_seed(0)
    n = 4000
    x = torch.rand(n, 3, 8, 8)
    for op, p, changed in (
        (G.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), 0.8, lambda out: (out != x).flatten(1).any(1)),
        (G.RandomGrayscale(p=0.2), 0.2, lambda out: (out[:, 0] == out[:, 1]).flatten(1).all(1)),
        (G.GaussianBlur(3, sigma=(0.1, 2.0), p=0.5), 0.5, lambda out: (out != x).flatten(1).any(1)),
    ):
        share = changed(op(x)).float().mean().item()
        assert abs(share - p) < Z * (p * (1 - p) / n) ** 0.5, (op, share)


def test_color_jitter_statistics_match_cpu():
    """Same factors' ranges and random op order: per-channel mean and second moment as torchvision's (float)."""
    torch.manual_seed(0)
    n = 400
    x = images("cifar", n).float() / 255
    cpu = torch.stack([v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)(xi) for xi in x])
    gpu = G.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)(x)
    for stat in (lambda t: t.mean((2, 3)), lambda t: t.pow(2).mean((2, 3)), lambda t: t.std((2, 3))):
        assert_close_means(stat(cpu), stat(gpu), paired=True)


# ---- whole pipelines: GPU path vs CPU path ------------------------------------------------------------------------
PIPELINES = {
    "fmnist": (fmnist_transforms, R.fmnist_gpu_transforms, FMNIST_MEAN, FMNIST_STD, 512),
    "cifar": (cifar_transforms, R.cifar_gpu_transforms, CIFAR_MEAN, CIFAR_STD, 256),
}


@pytest.mark.parametrize("kind", sorted(PIPELINES))
def test_pipeline_matches_cpu_path(kind):
    cpu_fn, gpu_fn, mean, std, n = PIPELINES[kind]
    torch.manual_seed(0)
    x = images(kind, n)
    view1, view2, _ = cpu_fn()
    cpu_views = (torch.stack([view1(xi) for xi in x]), torch.stack([view2(xi) for xi in x]))
    gpu_views = gpu_fn()(x)
    mean, std = torch.tensor(mean), torch.tensor(std)
    low, high = -mean / std, (1 - mean) / std  # pixel values 0 and 1, normalised
    for v, (cpu, gpu) in enumerate(zip(cpu_views, gpu_views, strict=True), 1):
        assert gpu.shape == cpu.shape == x.shape and gpu.dtype == cpu.dtype == torch.float32
        for out in (cpu, gpu):
            assert (out.amin((0, 2, 3)) >= low - 1e-5).all() and (out.amax((0, 2, 3)) <= high + 1e-5).all()
        span = (high - low).numpy()
        np.testing.assert_allclose(gpu.amin((0, 2, 3)), cpu.amin((0, 2, 3)), atol=0.25 * span.min())
        np.testing.assert_allclose(gpu.amax((0, 2, 3)), cpu.amax((0, 2, 3)), atol=0.25 * span.min())
        # The GPU path keeps float through the SimCLR colour ops; the CPU path truncates to uint8 after each of
        # them, which darkens by < 2 grey levels (measured ~1): allow 2 levels for view 2 of CIFAR.
        bias = 2 / 255 / std if (kind, v) == ("cifar", 2) else torch.zeros_like(std)
        m_cpu, m_gpu = cpu.mean((2, 3)), gpu.mean((2, 3))
        assert_close_means(m_cpu, m_gpu, bias, paired=True)
        sq_cpu, sq_gpu = cpu.pow(2).mean((2, 3)), gpu.pow(2).mean((2, 3))
        # |E[(x + d)^2] - E[x^2]| <= 2 |d| sqrt(E[x^2]) + d^2 for a shift |d| <= bias.
        assert_close_means(sq_cpu, sq_gpu, 2 * bias * sq_cpu.mean(0).sqrt() + bias**2, paired=True)


def describe_cpu(t) -> list[tuple]:
    """(op, parameters) of a CPU pipeline, in order; dtype conversion left out."""
    out = []
    for op in t.transforms:
        p = None
        if isinstance(op, v2.RandomApply):
            op, p = op.transforms[0], op.p
        name = type(op).__name__
        if isinstance(op, v2.RandomCrop):
            out.append((name, op.size[0], op.padding[0]))
        elif isinstance(op, v2.RandomResizedCrop):
            out.append((name, op.size[0], tuple(op.scale), tuple(op.ratio)))
        elif isinstance(op, v2.ColorJitter):
            out.append((name, op.brightness, op.contrast, op.saturation, op.hue, p))
        elif isinstance(op, v2.GaussianBlur):
            out.append((name, op.kernel_size[0], tuple(op.sigma), p))
        elif isinstance(op, v2.RandomErasing):
            out.append((name, op.p, tuple(op.scale), tuple(op.ratio), op.value[0]))
        elif isinstance(op, v2.Normalize):
            out.append((name, tuple(op.mean), tuple(op.std)))
        elif isinstance(op, v2.AutoAugment):
            out.append((name, op.policy))
        elif isinstance(op, Cutout):
            out.append((name, op.size))
        elif not isinstance(op, v2.ToDtype):
            out.append((name, op.p))
    return out


def describe_gpu(t: torch.nn.Module) -> list[tuple]:
    out = []
    for op in t:
        name = type(op).__name__
        if isinstance(op, G.RandomCrop):
            out.append((name, op.size, op.padding))
        elif isinstance(op, G.RandomResizedCrop):
            out.append((name, op.size, op.scale, op.ratio))
        elif isinstance(op, G.ColorJitter):
            spread = (op.brightness, op.contrast, op.saturation)
            out.append((name, *((max(0.0, 1 - v), 1 + v) for v in spread), (-op.hue, op.hue), op.p))
        elif isinstance(op, G.GaussianBlur):
            out.append((name, op.kernel_size, op.sigma, op.p))
        elif isinstance(op, G.RandomErasing):
            out.append((name, op.p, op.scale, op.ratio, op.value))
        elif isinstance(op, G.Normalize):
            out.append((name, tuple(op.mean.flatten().tolist()), tuple(op.std.flatten().tolist())))
        elif isinstance(op, G.AutoAugment):
            out.append((name, op.reference.policy))
        elif isinstance(op, G.Cutout):
            out.append((name, op.size))
        elif not isinstance(op, G.ToFloat):
            out.append((name, op.p))
    return out


def flat(values) -> list:
    return [x for v in values for x in (flat(v) if isinstance(v, tuple) else [v])]


@pytest.mark.parametrize("kind", sorted(PIPELINES))
def test_gpu_pipelines_mirror_the_cpu_ops_and_parameters(kind):
    cpu_fn, gpu_fn, *_ = PIPELINES[kind]
    cpu_views, gpu_views = cpu_fn()[:2], gpu_fn()
    for cpu, gpu in zip(cpu_views, (gpu_views.view1, gpu_views.view2), strict=True):
        expected, got = describe_cpu(cpu), describe_gpu(gpu)
        assert [d[0] for d in got] == [d[0] for d in expected]
        for e, g in zip(expected, got, strict=True):
            assert flat(g) == pytest.approx(flat(e)), (e, g)


def test_augment_false_is_plain_normalisation():
    x = images("cifar", 4)
    _, _, evaluate = cifar_transforms()
    expected = torch.stack([evaluate(xi) for xi in x])
    for view in R.cifar_gpu_transforms(augment=False)(x):
        torch.testing.assert_close(view, expected)


def test_global_seed_makes_views_reproducible():
    x = images("cifar", 16)
    views = R.cifar_gpu_transforms()
    torch.manual_seed(3)
    first = views(x)
    torch.manual_seed(3)
    second = views(x)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", sorted(PIPELINES))
def test_pipelines_run_on_cuda(kind):
    _, gpu_fn, mean, std, n = PIPELINES[kind]
    x = images(kind, n)
    on_cpu = gpu_fn()(x)
    on_gpu = gpu_fn()(x.cuda())
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert b.device.type == "cuda" and b.shape == a.shape and b.dtype == a.dtype
        assert_close_means(a.mean((2, 3)), b.cpu().mean((2, 3)))


# ---- wiring: the DataModule hook and a training run ---------------------------------------------------------------
def test_datamodule_builds_the_views_for_training_batches_only(fmnist_dir):
    kwargs = dict(n_max=40, imbalance_factor=10, val_per_class=5, batch_size=8, num_workers=0)
    cpu_dm = FashionMNISTLTDataModule(str(fmnist_dir), **kwargs)
    gpu_dm = FashionMNISTLTDataModule(str(fmnist_dir), gpu_augment=True, **kwargs)
    x1, x2, y = next(iter(cpu_dm.train_dataloader()))
    raw = next(iter(gpu_dm.train_dataloader()))
    eval_batch = next(iter(gpu_dm.val_dataloader()))
    assert len(raw) == 2 and raw[0].dtype == torch.uint8 and raw[0].shape == (8, 1, 28, 28)  # workers only collate

    gpu_dm.trainer = SimpleNamespace(training=True)
    g1, g2, gy = gpu_dm.on_after_batch_transfer(raw, 0)
    for cpu, gpu in ((x1, g1), (x2, g2), (y, gy)):
        assert gpu.shape == cpu.shape and gpu.dtype == cpu.dtype
    assert gy is raw[1]

    gpu_dm.trainer = SimpleNamespace(training=False)  # validation, test, sanity check: untouched
    assert gpu_dm.on_after_batch_transfer(eval_batch, 0) is eval_batch
    assert eval_batch[0].dtype == torch.float32  # eval loaders keep their CPU normalisation
    gpu_dm.trainer = None
    assert gpu_dm.on_after_batch_transfer(raw, 0) is raw


def test_fast_dev_run_with_gpu_augment(cifar10_dir, tmp_path):
    overrides = ["experiment=cifar10_lt", "debug=fdr", "data.gpu_augment=true"]
    cfg = compose_cfg(overrides + tiny_overrides("cifar10_lt", {"cifar10_lt": cifar10_dir}), tmp_path)
    assert cfg.data.gpu_augment is True
    metrics = train(cfg)  # training_step unpacks (x1, x2, y): fails if the hook did not build the views
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_cifar_datamodule_accepts_gpu_augment(cifar10_dir):
    dm = CIFARLTDataModule(
        str(cifar10_dir), n_max=20, imbalance_factor=10, batch_size=8, num_workers=0, gpu_augment=True
    )
    x, y = next(iter(dm.train_dataloader()))
    dm.trainer = SimpleNamespace(training=True)
    v1, v2_, _ = dm.on_after_batch_transfer((x, y), 0)
    assert v1.shape == v2_.shape == (8, 3, 32, 32) and v1.dtype == torch.float32
