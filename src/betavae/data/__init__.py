"""LightningDataModules yielding `(images, targets)` batches with images as floats in [0, 1]."""

from betavae.data.digits import DigitsDataModule
from betavae.data.dsprites import DSpritesDataModule
from betavae.data.image_folder import ImageFolderDataModule
from betavae.data.mpi3d import MPI3DDataModule
from betavae.data.shapes3d import Shapes3DDataModule
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
    "DSpritesDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "MPI3DDataModule",
    "Shapes3DDataModule",
    "SpritesDataModule",
    "render_sprites",
]
