"""scikit-learn's handwritten digits: 1,797 real, labelled images that ship inside scikit-learn.

They are the test part of the UCI optical-recognition digits: 32x32 bitmaps from 13 writers,
each 4x4 block counted into one pixel, so an image is 8x8 with grey levels 0..16, and
classes 0-9 are about equally common (174 to 183 images). Nothing to download and seconds to
train on a CPU, which makes them the small real labelled set for semi-supervised measurements.
The splits are carved at random, so the same writers appear in every split.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from betavae.data.base import HeldOutTestDataModule

# load_digits' images are this size, their grey levels 0..GREY_LEVELS.
DIGIT_SIZE = 8
GREY_LEVELS = 16


def load_digit_tensors(image_size: int) -> tuple[Tensor, Tensor]:
    """uint8 images (1797, 1, S, S), the 8x8 digit centred on black, and int64 labels (1797,).

    Padding rather than upscaling keeps every pixel counted once in the likelihood, so the
    reconstruction term weighs as much against the KL at any size.
    """
    from sklearn.datasets import load_digits  # here: importing scikit-learn takes seconds

    digits = load_digits()
    images = torch.from_numpy(digits.images).to(torch.uint8).unsqueeze(1)
    before = (image_size - DIGIT_SIZE) // 2
    after = image_size - DIGIT_SIZE - before
    images = F.pad(images, (before, after, before, after))
    return images, torch.from_numpy(digits.target).long()


class DigitsDataset(Dataset):
    """The whole set in memory, for the in-memory fast path; targets are the digit."""

    classes = tuple(str(digit) for digit in range(10))

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images = images
        self.class_labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index].float() / GREY_LEVELS, self.class_labels[index]

    def tensors_uint8(self) -> tuple[Tensor, Tensor, int]:
        return self.images, self.class_labels, GREY_LEVELS


class DigitsDataModule(HeldOutTestDataModule):
    """The digits padded to `image_size` (16 lets the default conv net halve them 4 times),
    split by `split_seed` into train, val and test."""

    def __init__(
        self,
        image_size: int = 16,
        batch_size: int = 128,
        num_workers: int = 0,
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
        self.image_size = image_size

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, self.image_size, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        dataset = DigitsDataset(*load_digit_tensors(self.image_size))
        self._use_whole(dataset)
