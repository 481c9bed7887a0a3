"""MPI3D (Gondal et al. 2019) from its published files: mpi3d_toy.npz, mpi3d_realistic.npz or
mpi3d_real.npz, the same robot-arm scenes simply rendered, realistically rendered, or filmed.

Each archive holds one array, `images`, uint8 (1036800, 64, 64, 3), every combination of the
factors below, the last varying fastest; there are no labels, as a row's factors follow from
its place. The factors' values are their indices, as the data set's README lists them.
`images` is 12.7 GB: memory-mapped where the archive stores it uncompressed (as np.savez
writes), decompressed into memory whole where it is compressed.
"""

from typing import ClassVar

import numpy as np

from betavae.data.array_files import NpzFile
from betavae.data.factor_grid import FILE_IMAGE_SIZE, FactorGrid, FactorGridDataModule, GridFile

PUBLISHED = (
    "data=mpi3d reads mpi3d_toy.npz, mpi3d_realistic.npz or mpi3d_real.npz, published at "
    "https://github.com/rr-learning/disentanglement_dataset"
)
FACTOR_NAMES = (
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)
FACTOR_SIZES = (6, 6, 2, 3, 3, 40, 40)
SHAPES = ("cone", "cube", "cylinder", "hexagonal", "pyramid", "sphere")


class MPI3DDataModule(FactorGridDataModule):
    """MPI3D's 64x64 RGB scenes; targets: (7,) float32 factor indices of each image; class:
    the object's shape, 0 cone, 1 cube, 2 cylinder, 3 hexagonal, 4 pyramid, 5 sphere."""

    factor_names: ClassVar[tuple[str, ...]] = FACTOR_NAMES
    class_factor: ClassVar[str] = "object_shape"
    classes: ClassVar[tuple[str, ...]] = SHAPES
    channels: ClassVar[int] = 3

    def read_file(self) -> GridFile:
        file = NpzFile(self.path, PUBLISHED)
        size = FILE_IMAGE_SIZE
        total = file.check("images", (None, size, size, 3), "uint8")[0]
        grid = FactorGrid(FACTOR_NAMES, tuple(np.arange(count) for count in FACTOR_SIZES))
        if total != len(grid):
            sizes = "x".join(map(str, FACTOR_SIZES))
            raise file.error(f"'images' holds {total:,} images, not {len(grid):,} ({sizes})")
        images = file.rows("images", (None, size, size, 3))
        return GridFile(images, 255, grid)
