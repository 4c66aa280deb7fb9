"""Two augmented views of the test images, for every dataset family (selfsup's input)."""

from __future__ import annotations

import torch

from datagen import write_image_folder
from ecl_lightning.data import CIFARLTDataModule, ImageFolderDataModule, ImageNetLTDataModule
from ecl_lightning.posthoc.logits import views_loader


def _check_views(dm, shape):
    dm.setup()
    torch.manual_seed(0)
    x1, x2, y = next(iter(views_loader(dm, dm.test_set)))
    assert x1.shape == x2.shape == (len(y), *shape)
    assert torch.equal(y, dm.test_set.targets[: len(y)])  # in order, labels untouched
    assert not torch.equal(x1, x2)  # two independent draws of the training view
    plain, _ = next(iter(dm.test_dataloader()))
    assert plain.shape == x1.shape


def test_views_of_in_memory_test_images(cifar10_dir):
    dm = CIFARLTDataModule(str(cifar10_dir), batch_size=4, eval_batch_size=8, num_workers=0, n_max=20,
                           imbalance_factor=10, augment=False)  # fmt: skip
    _check_views(dm, (3, 32, 32))  # augment=False in the data: the views still augment


def test_views_of_image_file_test_images(imagenet_lt_tree):
    root = imagenet_lt_tree
    dm = ImageNetLTDataModule(str(root / "splits"), str(root / "images"), num_classes=5, batch_size=4,
                              eval_batch_size=4, num_workers=0, image_size=32, resize_size=36)  # fmt: skip
    _check_views(dm, (3, 32, 32))


def test_views_of_image_folder_test_images(tmp_path):
    root = write_image_folder(tmp_path / "folder", [6, 5, 4, 4])
    dm = ImageFolderDataModule(str(root), val_per_class=2, batch_size=2, eval_batch_size=4, num_workers=0,
                               image_size=16)  # fmt: skip
    _check_views(dm, (3, 16, 16))
