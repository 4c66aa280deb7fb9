"""data.decode=bytes (data/datasets/encoded.py, data/transforms/gpu_split_file.py) against the PIL path of the
split-file DataModules: the option check, the same labels and eval images, training views equal in distribution, the
odd files, a training run.

Decoding: PIL and torchvision.io both use libjpeg-turbo with its default (slow integer) IDCT, so the decoded pixels
are equal here; the eval resize differs by PIL's and torch's antialiased bilinear kernels: mean absolute difference
under 0.05 grey levels and at most 2 levels (measured 0.004 and 1). Statistical checks compare means with a bound of
4 standard errors (two-sided chance of a false failure about 6e-5; the seeds are fixed anyway) plus, for the colour
views, 2 grey levels: the PIL path rounds to uint8 after each colour op, the batched one keeps float (as in
tests/data/test_gpu_aug.py).
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

from datagen import colour_images, natural_image, write_split_tree
from ecl_lightning.data import DatasetFormatError, ImageNetLTDataModule, PlacesLTDataModule, imagefolder_transforms
from ecl_lightning.data.datasets.encoded import EncodedBatch, EncodedImageDataset, decode_batch
from ecl_lightning.data.datasets.image_files import load_image
from ecl_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ecl_lightning.data.transforms import gpu as G
from ecl_lightning.data.transforms.gpu_split_file import (
    GroupedColorJitter,
    RandAugment,
    RandomResizedCropEach,
    sample_crop_boxes,
)
from ecl_lightning.data.transforms.recipes import split_file_gpu_transforms
from ecl_lightning.train import train
from helpers import compose_cfg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

Z = 4.0
CPU = torch.device("cpu")
MODULES = {"imagenet_lt": ImageNetLTDataModule, "places_lt": PlacesLTDataModule}
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def assert_close_means(a: torch.Tensor, b: torch.Tensor, allowance: float | torch.Tensor = 0.0) -> None:
    """Means over dim 0 of two independent samples agree within Z standard errors (+ allowance), element-wise."""
    a, b = a.double(), b.double()
    diff, se = a.mean(0) - b.mean(0), (a.var(0) / len(a) + b.var(0) / len(b)) ** 0.5
    bound = Z * se + allowance
    assert (diff.abs() <= bound).all(), f"mean difference {diff.tolist()} beyond {bound.tolist()}"


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory) -> Path:
    """ImageNet-LT layout, 4 classes, photo-like 150x112 JPEGs (natural_image), 6/4/3/3 train, 2 val and test."""
    return write_split_tree(
        tmp_path_factory.mktemp("photos"), "imagenet_lt", 4, [6, 4, 3, 3], 2, size=(150, 112), natural=True
    )


def make(tree: Path, cls=ImageNetLTDataModule, **kw):
    kw = {"num_classes": 4, "batch_size": 4, "eval_batch_size": 8, "num_workers": 0, "image_size": 64} | kw
    kw.setdefault("resize_size", 72)
    return cls(str(tree / "splits"), str(tree / "images"), **kw)


def attached(dm):
    """The datamodule as inside Lightning's loops (a trainer attached): its eval loaders read bytes too."""
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0, training=False)
    return dm


def jpeg_bytes(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **save)
    return buf.getvalue()


# ---- the option ---------------------------------------------------------------------------------------------------
def test_decode_option_is_checked_before_any_file_is_read():
    with pytest.raises(ValueError, match=r"data\.decode must be one of \('pil', 'bytes'\).*got 'turbo'"):
        ImageNetLTDataModule("/nonexistent/splits", "/nonexistent/images", decode="turbo")


def test_data_configs_default_to_pil():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        for name in ("imagenet_lt", "places_lt", "inat2018"):
            assert compose("train", overrides=[f"data={name}"]).data.decode == "pil"


def test_file_checks_still_apply_with_bytes(photo_tree, tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    for s in ("train", "val", "test"):
        text = (photo_tree / "splits" / f"ImageNet_LT_{s}.txt").read_text()
        (splits / f"ImageNet_LT_{s}.txt").write_text(text + ("missing/file.JPEG 0\n" if s == "train" else ""))
    dm = ImageNetLTDataModule(str(splits), str(photo_tree / "images"), num_classes=4, decode="bytes")
    with pytest.raises(DatasetFormatError, match=r"ImageNet_LT_train\.txt:17: image file not found"):
        dm.setup()


# ---- same labels, same eval images --------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_batches_equal_the_pil_ones(photo_tree, split):
    pil, raw = make(photo_tree), attached(make(photo_tree, decode="bytes"))
    loader = getattr(raw, f"{split}_dataloader")
    diffs, batches = [], 0
    for encoded, (x_pil, y_pil) in zip(loader(), getattr(pil, f"{split}_dataloader")(), strict=True):
        assert isinstance(encoded, EncodedBatch) and encoded.data.dtype == torch.uint8 and not encoded.train
        x, y = raw.transfer_batch_to_device(encoded, CPU, 0)
        assert torch.equal(y, y_pil) and x.shape == x_pil.shape and x.dtype == x_pil.dtype  # same order
        diffs.append(((x - x_pil) * STD).abs().flatten() * 255)  # grey levels
        batches += 1
    diff = torch.cat(diffs)
    assert batches == 1 and len(diff) == 8 * 3 * 64 * 64
    assert diff.mean() < 0.05 and diff.max() <= 2.0 + 1e-4, (diff.mean(), diff.max())


def test_without_a_trainer_eval_loaders_decode_with_pil(photo_tree):
    """The evaluation protocols read datamodule.test_dataloader() outside Lightning's loops (no batch hooks)."""
    raw = make(photo_tree, decode="bytes")
    x, y = next(iter(raw.test_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (8, 3, 64, 64)
    assert tuple(raw.test_set[0][0].shape) == (3, 64, 64)  # the datasets stay the PIL ones (model profile, protocols)


def test_train_batches_have_the_pil_shapes_and_labels(photo_tree):
    pil, raw = make(photo_tree), make(photo_tree, decode="bytes")
    torch.manual_seed(0)
    pil_batches = list(pil.train_dataloader())
    torch.manual_seed(0)
    raw_batches = list(raw.train_dataloader())
    assert len(raw_batches) == len(pil_batches) == 4  # 16 images, batch 4, drop_last
    for encoded, (x1_pil, x2_pil, y_pil) in zip(raw_batches, pil_batches, strict=True):
        assert isinstance(encoded, EncodedBatch) and encoded.train and encoded.jpeg.all()
        assert encoded.offsets[-1] == len(encoded.data) and len(encoded.files) == 4
        x1, x2, y = raw.transfer_batch_to_device(encoded, CPU, 0)
        assert torch.equal(y, y_pil)  # same shuffle, same labels
        for x, x_pil in ((x1, x1_pil), (x2, x2_pil)):
            assert x.shape == x_pil.shape == (4, 3, 64, 64) and x.dtype == x_pil.dtype


# ---- training views: equal in distribution ------------------------------------------------------------------------
def box_statistics(top, left, h, w, height: int, width: int) -> torch.Tensor:
    """(B, 4): top and left as fractions of the image, area fraction, log aspect (w / h)."""
    top, left, h, w = (t.double() for t in (top, left, h, w))
    return torch.stack((top / height, left / width, h * w / (height * width), torch.log(w / h)), 1)


def test_crop_boxes_match_torchvision():
    """Position, area fraction and log aspect of the boxes, for landscape, portrait and a panorama (which often
    takes torchvision's central fallback crop)."""
    torch.manual_seed(0)
    n, scale, ratio = 3000, (0.08, 1.0), (3 / 4, 4 / 3)
    for height, width in ((375, 500), (500, 375), (60, 600)):
        top, left, h, w = sample_crop_boxes(torch.full((n,), height), torch.full((n,), width), scale, ratio)
        assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
        image = torch.empty(1, height, width)
        ref = torch.tensor([T.RandomResizedCrop.get_params(image, scale, ratio) for _ in range(n)])
        expected = box_statistics(*ref.unbind(1), height, width)
        assert_close_means(box_statistics(top, left, h, w, height, width), expected)


def test_randaugment_ops_treat_each_image_of_a_batch_separately():
    """Every op of RandAugment's space at magnitude 10, both signs: on a batch == on each image (grouping is exact)."""
    ra = RandAugment(num_ops=2, magnitude=10)
    ref = ra.reference
    x = torch.from_numpy(colour_images(np.arange(6), np.random.default_rng(0)).reshape(6, 3, 32, 32))
    for name, (magnitudes_fn, signed) in ref._AUGMENTATION_SPACE.items():
        magnitudes = magnitudes_fn(ref.num_magnitude_bins, 32, 32)
        m = float(magnitudes[ref.magnitude]) if magnitudes is not None else 0.0
        for magnitude in (m, -m) if signed else (m,):
            single = torch.stack([ra.apply_op(xi[None], name, magnitude)[0] for xi in x])
            assert torch.equal(ra.apply_op(x, name, magnitude), single), (name, magnitude)


def test_randaugment_statistics_match_torchvision():
    torch.manual_seed(0)
    n = 800
    x = torch.from_numpy(colour_images(np.arange(n) % 16, np.random.default_rng(0)).reshape(n, 3, 32, 32))
    cpu = torch.stack([v2.RandAugment(num_ops=2, magnitude=10)(xi) for xi in x])
    batched = RandAugment(num_ops=2, magnitude=10)(x)
    assert batched.dtype == torch.uint8 and batched.shape == x.shape
    for stat in (lambda t: t.float().mean((2, 3)), lambda t: t.float().std((2, 3))):
        assert_close_means(stat(cpu), stat(batched))
    unchanged = [(v == x).flatten(1).all(1).float()[:, None] for v in (cpu, batched)]  # Identity twice, ops w/o effect
    assert_close_means(*unchanged)


def test_grouped_color_jitter_equals_gpu_aug_color_jitter():
    """Same draws, same order of ops per sample: the same output as gpu_aug.ColorJitter, which the CIFAR tests check
    against torchvision; without hue it leaves hue out (torchvision's ColorJitter(b, c, s) does too)."""
    x = torch.rand(64, 3, 16, 16)
    torch.manual_seed(1)
    expected = G.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)(x)
    torch.manual_seed(1)
    torch.testing.assert_close(GroupedColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)(x), expected, atol=1e-6, rtol=0)
    torch.manual_seed(0)
    n = 2000
    x = torch.from_numpy(colour_images(np.arange(n) % 16, np.random.default_rng(0)).reshape(n, 3, 32, 32))
    cpu = torch.stack([v2.ColorJitter(0.4, 0.4, 0.4)(xi) for xi in x]).float() / 255
    batched = GroupedColorJitter(0.4, 0.4, 0.4, 0.0)(x.float() / 255)
    for stat in (lambda t: t.mean((2, 3)), lambda t: t.std((2, 3))):
        assert_close_means(stat(cpu), stat(batched), 2 / 255)


def view_statistics(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per view (B,): brightness, luma contrast (spatial std), saturation (max - min channel) and sharpness (mean
    absolute luma gradient) of normalised views, in [0, 1] pixel units."""
    x = x * STD + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    sharpness = (luma.diff(dim=1).abs().mean((1, 2)) + luma.diff(dim=2).abs().mean((1, 2))) / 2
    return {
        "brightness": x.mean((1, 2, 3)),
        "contrast": luma.std((1, 2)),
        "saturation": (x.amax(1) - x.amin(1)).mean((1, 2)),
        "sharpness": sharpness,
    }


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical distribution functions."""
    a, b = a.double().sort().values, b.double().sort().values
    points = torch.cat((a, b))
    gap = torch.searchsorted(a, points, right=True) / len(a) - torch.searchsorted(b, points, right=True) / len(b)
    return float(gap.abs().max())


@pytest.mark.parametrize("recipe", ["randaugment", "simclr"])
def test_training_views_equal_the_pil_views_in_distribution(recipe):
    """One photo-like JPEG, 800 draws of each view per path: the distributions of four statistics of a view agree
    (two-sample KS test at alpha 1e-4: distance under 2.22 sqrt(2 / n) = 0.111). Measured: correct pipelines stay
    under 0.08, while the blur left out (0.34), the grey views left out (0.19), half the jitter (0.15-0.17) or
    RandAugment at magnitude 5 (0.14) fail. RandAugment with one op (0.12) is at the edge and the crop scale hardly
    shows on this image (1/f noise looks alike at every scale): the boxes are tested above, the parameters below."""
    arr = natural_image(np.random.default_rng(1), 150, 112)
    data = jpeg_bytes(Image.fromarray(arr))
    pil = Image.open(io.BytesIO(data)).convert("RGB")
    decoded = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    view1, view2, _ = imagefolder_transforms(recipe, 64, 72, IMAGENET_MEAN, IMAGENET_STD)
    batched = split_file_gpu_transforms(recipe, 64, 72, IMAGENET_MEAN, IMAGENET_STD)
    n = 800
    torch.manual_seed(0)
    cpu_views = (torch.stack([view1(pil) for _ in range(n)]), torch.stack([view2(pil) for _ in range(n)]))
    batched_views = batched.two_views([decoded] * n)
    critical = 2.22 * (2 / n) ** 0.5  # sqrt(-ln(alpha / 2) / 2) sqrt((n + m) / (n m)), alpha = 1e-4
    for v, (cpu, out) in enumerate(zip(cpu_views, batched_views, strict=True), 1):
        assert out.shape == cpu.shape == (n, 3, 64, 64) and out.dtype == cpu.dtype
        cpu_stats, out_stats = view_statistics(cpu), view_statistics(out)
        distances = {k: ks_distance(cpu_stats[k], out_stats[k]) for k in cpu_stats}
        assert max(distances.values()) < critical, (f"view {v}", distances)


def describe(view) -> list[tuple]:
    """(op, parameters) of a CPU (v2.Compose) or batched (nn.Sequential) view, dtype conversions left out."""
    out = []
    for op in view.transforms if isinstance(view, v2.Compose) else view:
        p = 1.0
        if isinstance(op, v2.RandomApply):
            op, p = op.transforms[0], op.p
        if isinstance(op, v2.RandomResizedCrop):
            out.append(("crop", op.size[0], tuple(op.scale), tuple(op.ratio)))
        elif isinstance(op, RandomResizedCropEach):
            out.append(("crop", op.size, op.scale, op.ratio))
        elif isinstance(op, v2.ColorJitter):
            ranges = [op.brightness, op.contrast, op.saturation, op.hue]
            out.append(("jitter", *(tuple(r) if r is not None else (0.0, 0.0) for r in ranges), p))
        elif isinstance(op, GroupedColorJitter):
            spreads = (op.brightness, op.contrast, op.saturation)
            out.append(("jitter", *((max(0.0, 1 - v), 1 + v) for v in spreads), (-op.hue, op.hue), op.p))
        elif isinstance(op, v2.GaussianBlur):
            out.append(("blur", op.kernel_size[0], tuple(op.sigma), p))
        elif isinstance(op, G.GaussianBlur):
            out.append(("blur", op.kernel_size, op.sigma, op.p))
        elif isinstance(op, v2.RandAugment | RandAugment):
            ref = op if isinstance(op, v2.RandAugment) else op.reference
            out.append(("randaugment", ref.num_ops, ref.magnitude, ref.num_magnitude_bins))
        elif isinstance(op, v2.Normalize):
            out.append(("normalize", tuple(op.mean), tuple(op.std)))
        elif isinstance(op, G.Normalize):
            out.append(("normalize", tuple(op.mean.flatten().tolist()), tuple(op.std.flatten().tolist())))
        elif isinstance(op, v2.RandomHorizontalFlip | G.RandomHorizontalFlip):
            out.append(("flip", op.p))
        elif isinstance(op, v2.RandomGrayscale | G.RandomGrayscale):
            out.append(("grey", op.p))
        elif not isinstance(op, v2.ToImage | v2.ToDtype | v2.ToPureTensor | G.ToFloat | G.ToUint8):
            raise AssertionError(f"undescribed op {op}")
    return out


def flat(values) -> list:
    return [x for v in values for x in (flat(v) if isinstance(v, tuple) else [v])]


@pytest.mark.parametrize("recipe", ["randaugment", "simclr"])
def test_batched_views_mirror_the_cpu_ops_and_parameters(recipe):
    cpu = imagefolder_transforms(recipe, 224, 256, IMAGENET_MEAN, IMAGENET_STD)
    batched = split_file_gpu_transforms(recipe, 224, 256, IMAGENET_MEAN, IMAGENET_STD)
    for cpu_view, batched_view in zip(cpu[:2], (batched.view1, batched.view2), strict=True):
        expected, got = describe(cpu_view), describe(batched_view)
        assert [d[0] for d in got] == [d[0] for d in expected]
        for e, g in zip(expected, got, strict=True):
            assert flat(g[1:]) == pytest.approx(flat(e[1:])), (e, g)


def test_augment_false_gives_the_eval_crop_for_both_views(photo_tree):
    raw = make(photo_tree, decode="bytes", augment=False)
    raw.setup()
    encoded = next(iter(raw.train_dataloader()))
    x1, x2, _ = raw.transfer_batch_to_device(encoded, CPU, 0)
    assert torch.equal(x1, x2)
    expected = torch.stack([raw.test_set.transform(load_image(f, 3)) for f in encoded.files])
    assert ((x1 - expected) * STD).abs().max() * 255 <= 2.0 + 1e-4


# ---- odd files ----------------------------------------------------------------------------------------------------
def write_odd_files(root: Path) -> dict[str, Path]:
    rgb = Image.fromarray(natural_image(np.random.default_rng(2), 48, 40))
    paths = {k: root / f"{k}.{ext}" for k, ext in (("grey", "jpg"), ("cmyk", "jpg"), ("png", "png"), ("bmp", "bmp"))}
    paths["grey"].write_bytes(jpeg_bytes(rgb.convert("L")))
    paths["cmyk"].write_bytes(jpeg_bytes(rgb.convert("CMYK")))
    rgb.convert("RGBA").save(paths["png"])
    rgb.save(paths["bmp"])
    paths["cut"] = root / "cut.jpg"
    paths["cut"].write_bytes(jpeg_bytes(rgb)[:200])
    return paths


def encoded_set(paths: list[Path]) -> EncodedImageDataset:
    files = np.array([p.name.encode() for p in paths], dtype=np.bytes_)
    return EncodedImageDataset(paths[0].parent, files, torch.arange(len(paths)), train=False)


def test_grey_cmyk_and_png_files_decode_as_pil_rgb(tmp_path):
    paths = write_odd_files(tmp_path)
    kinds = ["grey", "cmyk", "png"]
    dataset = encoded_set([paths[k] for k in kinds])
    batch = dataset.collate_fn([dataset[i] for i in range(3)])
    assert batch.jpeg.tolist() == [True, True, False]
    for kind, img in zip(kinds, decode_batch(batch, CPU), strict=True):
        expected = torch.from_numpy(np.array(load_image(paths[kind], 3))).permute(2, 0, 1)
        assert img.shape == expected.shape == (3, 40, 48), kind
        assert (img.int() - expected.int()).abs().max() <= 1, kind


def test_unsupported_and_broken_files_are_named(tmp_path):
    paths = write_odd_files(tmp_path)
    dataset = encoded_set([paths["bmp"], paths["cut"], paths["grey"]])
    with pytest.raises(DatasetFormatError, match=r"bmp\.bmp with data\.decode=bytes: torchvision\.io reads JPEG"):
        dataset[0]
    batch = dataset.collate_fn([dataset[2], dataset[1]])  # a good file first: the batch decode fails as a whole
    with pytest.raises(DatasetFormatError, match=r"cannot decode image .*cut\.jpg with torchvision\.io"):
        decode_batch(batch, CPU)


# ---- wiring -------------------------------------------------------------------------------------------------------
def test_fast_dev_run_with_decode_bytes(photo_tree, tmp_path):
    overrides = [
        "data=imagenet_lt",
        f"data.split_dir={photo_tree / 'splits'}",
        f"data.image_root={photo_tree / 'images'}",
        "data.decode=bytes",
        "data.num_classes=4",
        "data.image_size=32",
        "data.resize_size=36",
        "data.batch_size=4",
        "data.eval_batch_size=8",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.pin_memory=false",
        "model.net.backbone=resnet32",
        "model.loss.queue_size=16",
        "debug=fdr",
        "trainer.enable_progress_bar=false",
    ]
    metrics = train(compose_cfg(overrides, tmp_path))  # training_step unpacks (x1, x2, y): fails without decoding
    assert metrics["test/count"] == 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_and_views_on_cuda(photo_tree):
    raw = make(photo_tree, decode="bytes")
    encoded = next(iter(raw.train_dataloader()))
    on_cpu = decode_batch(encoded, CPU)
    on_gpu = decode_batch(encoded, "cuda")
    for a, b in zip(on_cpu, on_gpu, strict=True):  # nvJPEG and libjpeg-turbo: a few grey levels at most
        assert b.device.type == "cuda" and b.shape == a.shape and (a.float() - b.cpu().float()).abs().mean() < 1.0
    x1, x2, y = raw.transfer_batch_to_device(encoded, torch.device("cuda"), 0)
    assert x1.device.type == x2.device.type == y.device.type == "cuda" and x1.shape == (4, 3, 64, 64)
