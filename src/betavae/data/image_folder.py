"""A user's own folder of images, labelled by subfolder when it is organised that way.

The rule: if `path` has subfolders and no image files of its own, each subfolder is a class
(as in torchvision's ImageFolder): labels 0, 1, ... follow the sorted subfolder names, and the
images are found at any depth inside each. Otherwise `path` is one unlabelled collection and
every image under it, at any depth, gets label 0. Files that are not images are skipped.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

from PIL.Image import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, is_image_file

from betavae.data.base import HeldOutTestDataModule
from betavae.errors import UserError
from betavae.user_paths import user_path


class UnlabelledImages(Dataset):
    """Image files with label 0, so every data set yields the same (images, targets) batches."""

    def __init__(self, files: list[Path], transform: Callable[[Image], Tensor]) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(default_loader(str(self.files[index]))), 0


class ImageFolderDataModule(HeldOutTestDataModule):
    """Images resized and centre-cropped to `image_size` squares with `channels` channels."""

    def __init__(
        self,
        path: str,
        image_size: int = 64,
        channels: int = 3,
        batch_size: int = 128,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        exclude_classes: Sequence[int] = (),
        labels_per_class: int | None = None,
        label_seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size,
            num_workers,
            val_fraction,
            test_fraction,
            split_seed,
            exclude_classes,
            labels_per_class,
            label_seed,
        )
        if channels not in (1, 3):
            raise UserError(f"data.channels={channels} is not allowed: 1 (grayscale) or 3 (RGB)")
        self.path = user_path(path)
        self.image_size = image_size
        self.channels = channels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        dataset = self._scan()
        if len(dataset) == 0:
            raise UserError(
                f"no images ({', '.join(IMG_EXTENSIONS)}) under {self.path}; "
                "point data.path= at a folder of images"
            )
        self._use_whole(dataset)

    def _scan(self) -> Dataset:
        if not self.path.is_dir():
            raise UserError(f"image folder {self.path} does not exist; set data.path= to a folder")
        # The loader always decodes to RGB; grayscale is one step more.
        steps: list[Callable] = [
            transforms.Resize(self.image_size),
            transforms.CenterCrop(self.image_size),
        ]
        if self.channels == 1:
            steps.append(transforms.Grayscale(num_output_channels=1))
        transform = transforms.Compose([*steps, transforms.ToTensor()])
        entries = list(self.path.iterdir())
        has_subfolders = any(entry.is_dir() for entry in entries)
        has_own_images = any(entry.is_file() and is_image_file(str(entry)) for entry in entries)
        if has_subfolders and not has_own_images:
            return ImageFolder(str(self.path), transform=transform, allow_empty=True)
        files = sorted(p for p in self.path.rglob("*") if p.is_file() and is_image_file(str(p)))
        return UnlabelledImages(files, transform)
