"""LightningDataModules yielding `(images, targets)` batches with images as floats in [0, 1]."""

from betavae.data.digits import DigitsDataModule
from betavae.data.image_folder import ImageFolderDataModule
from betavae.data.sprites import SpritesDataModule, render_sprites
from betavae.data.torchvision_sets import (
    CelebADataModule,
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "CelebADataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "SpritesDataModule",
    "render_sprites",
]
