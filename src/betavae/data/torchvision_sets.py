"""Data sets that torchvision reads and downloads: MNIST, FashionMNIST, CIFAR10 and CelebA.

torchvision decides where the files live under `data_dir` and whether they are complete;
these modules only turn its failures into one-line messages a user can act on.
"""

import shutil
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets, transforms

from betavae.data.base import BaseDataModule, split_off
from betavae.errors import UserError
from betavae.user_paths import user_path


class TorchvisionDataModule(BaseDataModule):
    """Uses the official test split and carves the validation split out of the training one."""

    dataset_name: str
    files_subdir: str  # where torchvision keeps the files under its root, for messages
    dataset_class: type[datasets.VisionDataset]

    def __init__(
        self,
        data_dir: str,
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        exclude_classes: Sequence[int] = (),
        labels_per_class: int | None = None,
        label_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, exclude_classes, labels_per_class, label_seed)
        self.data_dir = user_path(data_dir)
        self.download = download
        self.val_fraction = val_fraction
        self.split_seed = split_seed

    @property
    def files_dir(self) -> Path:
        return self.data_dir / self.files_subdir

    def prepare_data(self) -> None:
        if not self.download:
            return
        created = _topmost_missing(self.files_dir, self.data_dir)
        try:
            # One split is enough: torchvision fetches every file of the data set at once.
            self._open("train", download=True)
        except (OSError, RuntimeError) as err:
            # torchvision makes its folders before it fetches a file: a failed download would
            # otherwise leave them behind, empty or with a part of a file.
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            reason = " ".join(str(err).split())  # torchvision's reasons span several lines
            raise UserError(
                f"could not download {self.dataset_name} into {self.files_dir} ({reason}); "
                "fix that and retry, or put the files there yourself"
            ) from err

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full_train = self._existing("train")
        train, val = split_off(full_train, [self.val_fraction], self.split_seed)
        self._use_splits(train, val, self._existing("test"))

    def _existing(self, split: str) -> Dataset:
        # torchvision's own completeness check (it raises RuntimeError) stays right across its
        # versions, unlike a list of file names kept here.
        try:
            return self._open(split, download=False)
        except RuntimeError as err:
            raise UserError(
                f"{self.dataset_name} not found under {self.files_dir}; put the files there "
                "or add data.download=true to download them"
            ) from err

    def _open(self, split: str, download: bool) -> Dataset:
        return self.dataset_class(
            self.data_dir,
            train=split == "train",
            download=download,
            transform=transforms.ToTensor(),
        )


class MNISTDataModule(TorchvisionDataModule):
    dataset_name = "MNIST"
    files_subdir = "MNIST/raw"
    dataset_class = datasets.MNIST
    image_shape = (1, 28, 28)


class FashionMNISTDataModule(TorchvisionDataModule):
    dataset_name = "FashionMNIST"
    files_subdir = "FashionMNIST/raw"
    dataset_class = datasets.FashionMNIST
    image_shape = (1, 28, 28)


class CIFAR10DataModule(TorchvisionDataModule):
    dataset_name = "CIFAR10"
    files_subdir = "cifar-10-batches-py"
    dataset_class = datasets.CIFAR10
    image_shape = (3, 32, 32)


class CelebADataModule(TorchvisionDataModule):
    """Aligned CelebA faces; targets are the 40 binary attributes, int64 (40,) per image.

    CelebA ships its own train/valid/test partition, used as is so results compare with
    published ones; `val_fraction` and `split_seed` are accepted, like every torchvision
    data set's, but have nothing to choose here.
    """

    dataset_name = "CelebA"
    files_subdir = "celeba"
    dataset_class = datasets.CelebA

    def __init__(
        self,
        data_dir: str,
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        image_size: int = 64,
        exclude_classes: Sequence[int] = (),
        labels_per_class: int | None = None,
        label_seed: int = 0,
    ) -> None:
        super().__init__(
            data_dir,
            download,
            batch_size,
            num_workers,
            val_fraction,
            split_seed,
            exclude_classes,
            labels_per_class,
            label_seed,
        )
        self.image_size = image_size

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self._use_splits(self._existing("train"), self._existing("valid"), self._existing("test"))

    def _open(self, split: str, download: bool) -> Dataset:
        # The 178x218 aligned faces sit in the middle; a 148 crop keeps the face, drops background.
        transform = transforms.Compose(
            [
                transforms.CenterCrop(148),
                transforms.Resize(self.image_size),
                transforms.ToTensor(),
            ]
        )
        return self.dataset_class(
            self.data_dir, split=split, target_type="attr", download=download, transform=transform
        )


def _topmost_missing(path: Path, root: Path) -> Path | None:
    """The outermost folder of `path`, up to `root` itself, that does not exist yet: what a
    download into `path` creates."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
        if folder == root:
            break
    return missing
