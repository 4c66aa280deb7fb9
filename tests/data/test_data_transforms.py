"""Augmentation pipelines: shapes, dtypes, the eval transform's arithmetic and Cutout."""

import torch

from ecl_lightning.data import Cutout, cifar_transforms, fmnist_transforms
from ecl_lightning.data.transforms import CIFAR_MEAN, CIFAR_STD


def test_eval_transform_is_plain_normalisation():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    _, _, evaluate = cifar_transforms()
    expected = (img.float() / 255 - torch.tensor(CIFAR_MEAN)[:, None, None]) / torch.tensor(CIFAR_STD)[:, None, None]
    torch.testing.assert_close(evaluate(img), expected)


def test_views_keep_shape_and_dtype():
    torch.manual_seed(0)
    for transforms, shape in ((cifar_transforms(), (3, 32, 32)), (fmnist_transforms(), (1, 28, 28))):
        img = torch.randint(0, 256, shape, dtype=torch.uint8)
        for t in transforms:
            out = t(img)
            assert out.shape == shape and out.dtype == torch.float32


def test_augment_false_gives_identical_views():
    img = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    view1, view2, evaluate = fmnist_transforms(augment=False)
    assert torch.equal(view1(img), evaluate(img)) and torch.equal(view2(img), evaluate(img))


def test_cutout_zeroes_a_clipped_square():
    torch.manual_seed(0)
    img = torch.ones(3, 32, 32)
    zeroed = []
    for _ in range(50):
        out = Cutout(16)(img)
        mask = out[0] == 0
        assert torch.equal(mask, (out == 0).all(0))  # the same square in every channel
        rows, cols = mask.any(1).sum().item(), mask.any(0).sum().item()
        assert 8 <= rows <= 16 and 8 <= cols <= 16  # centre inside the image: at least half the side survives
        assert mask.sum().item() == rows * cols  # a rectangle
        zeroed.append(rows * cols)
    assert max(zeroed) == 256 and min(zeroed) < 256  # full squares inside, clipped ones at the border
    assert torch.equal(img, torch.ones(3, 32, 32))  # input untouched
