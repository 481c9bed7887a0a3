"""3D Shapes (Burgess and Kim 2018) from its published file, 3dshapes.h5.

The file holds `images`, uint8 (480000, 64, 64, 3) RGB, and `labels`, float64 (480000, 6),
the values of the factors floor_hue, wall_hue, object_hue, scale, shape and orientation
(10, 10, 10, 8, 4 and 15 values). The images are 5.9 GB, so they are read from the file as
they are needed (h5py); the labels, 23 MB, are read whole.
"""

from typing import ClassVar

import numpy as np

from betavae.data.array_files import H5File
from betavae.data.factor_grid import FILE_IMAGE_SIZE, FactorGrid, FactorGridDataModule, GridFile

PUBLISHED = (
    "data=shapes3d reads 3dshapes.h5, published at https://github.com/deepmind/3d-shapes "
    "(https://storage.googleapis.com/3d-shapes/3dshapes.h5)"
)
FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
# The data set's README numbers the shapes 0 to 3 without naming them; these are the objects
# its images show, by number, as other loaders of the set name them.
SHAPES = ("cube", "cylinder", "sphere", "capsule")
# Label values are compared after rounding to this many decimals, so that two floats of one
# grid value that differ in their last bits still count as one value.
_DECIMALS = 6


class Shapes3DDataModule(FactorGridDataModule):
    """3D Shapes' 64x64 RGB scenes; targets: (6,) float32 labels of each image; class: the
    object's shape, 0 cube, 1 cylinder, 2 sphere, 3 capsule."""

    factor_names: ClassVar[tuple[str, ...]] = FACTOR_NAMES
    class_factor: ClassVar[str] = "shape"
    classes: ClassVar[tuple[str, ...]] = SHAPES
    channels: ClassVar[int] = 3

    def read_file(self) -> GridFile:
        file = H5File(self.path, PUBLISHED)
        size = FILE_IMAGE_SIZE
        total = file.check("images", (None, size, size, 3), "uint8")[0]
        labels = file.load("labels", (total, len(FACTOR_NAMES)), "numeric").round(_DECIMALS)
        indices = np.stack(
            [np.unique(column, return_inverse=True)[1] for column in labels.T], axis=1
        )
        grid = FactorGrid.of_rows(FACTOR_NAMES, indices, labels)
        if grid is None:
            raise file.error(
                "the rows of 'labels' are not every combination of the factors' values, in "
                "the published order"
            )
        images = file.rows("images", (None, size, size, 3))
        return GridFile(images, 255, grid)
