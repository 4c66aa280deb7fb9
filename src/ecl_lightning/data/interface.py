"""The DataModule interface, written down: what training, evaluation, prediction and export use of a DataModule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import DataLoader

    from ecl_lightning.data.datasets.views import ImageDataset
    from ecl_lightning.data.input_spec import InputSpec


@runtime_checkable
class LongTailData(Protocol):
    """What train.py, evaluate.py, inference.py (predict, export), module.py and posthoc/ use of a DataModule,
    besides Lightning's own hooks (prepare_data, on_after_batch_transfer...). Every DataModule of the package is a
    BaseDataModule (datamodules/base.py, a LightningDataModule) that satisfies it
    (tests/data/test_datamodule_interface.py). Optional, read with getattr:
    `class_names` (image folders), stored in the checkpoint for predict and export.
    """

    name: str
    """Short name of the dataset, in records and messages (`fmnist_lt`, `cifar10_lt`, `imagenet_lt`, `image_folder`)."""
    num_classes: int
    """Number of classes: the model's output size."""
    in_chans: int
    """Channels of the model's input images: 1 (grey) or 3 (RGB)."""
    has_val: bool
    """Whether a validation split exists; without one the run trains blind and reports the last epoch."""
    batch_size: int
    """Training batch size (every training batch is full: drop_last)."""
    eval_batch_size: int
    """Validation and test batch size."""
    num_workers: int
    """DataLoader worker processes."""
    pin_memory: bool
    """Whether the DataLoaders pin memory."""
    train_set: ImageDataset
    """After setup(): the long-tailed training set, items (x1, x2, y) (or (uint8 x, y) under gpu_augment)."""
    val_set: ImageDataset | None
    """After setup(): the validation set, items (x, y); None without a validation split."""
    test_set: ImageDataset
    """After setup(): the balanced test set, items (x, y)."""

    @property
    def class_counts(self) -> list[int]:
        """Training images per class (sets up lazily): the prior of the balanced losses and the shot splits."""
        ...

    def check(self) -> None:
        """Raise DatasetNotFoundError or DatasetFormatError now, naming the files, when the data is missing or
        unusable; cheap where it can be (called before anything is built)."""
        ...

    def setup(self, stage: str | None = None) -> None:
        """Read the data and build the three sets; idempotent."""
        ...

    def subset_info(self) -> dict:
        """JSON-serialisable record of the data used (files, counts, indices), saved as the run's data_subset.json."""
        ...

    def input_spec(self) -> InputSpec:
        """What a model trained on this data expects as input: predict and export build their transform from it."""
        ...

    def transforms(self, augment: bool) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(train view 1, train view 2, eval) CPU transforms of a stored image; evaluation reuses view 1."""
        ...

    def train_dataloader(self) -> DataLoader:
        """Shuffled, full training batches."""
        ...

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in order; [] without a validation split."""
        ...

    def test_dataloader(self) -> DataLoader:
        """Test batches in order, each sample once (also under DDP)."""
        ...
