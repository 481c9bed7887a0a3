"""dSprites (Matthey et al. 2017) from the file it is published as,
dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz.

The archive holds `imgs`, uint8 (737280, 64, 64) in {0, 1}; `latents_values`, float64
(737280, 6), and `latents_classes`, int64 (737280, 6), the values and indices of the factors
color, shape, scale, orientation, posX, posY; and a pickled `metadata` dict, not read here.
`imgs` is compressed (3 GB as bytes, 26 MB in the file), so it is decompressed once and held
at one bit a pixel: 377 MB for the whole grid.

`color` is left out of the factors: it has one value (white), so it carries no information,
and a metric that conditions on a factor would condition on a constant. What remains is
disentanglement_lib's five factors (its `dsprites_full`), shape first, as in this project's
sprites.
"""

from typing import ClassVar

from betavae.data.array_files import NpzFile
from betavae.data.factor_grid import FILE_IMAGE_SIZE, FactorGrid, FactorGridDataModule, GridFile

PUBLISHED = (
    "data=dsprites reads dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz, published at "
    "https://github.com/deepmind/dsprites-dataset"
)
# The file's own factor names, in its order, less `color` (column 0).
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
SHAPES = ("square", "ellipse", "heart")


class DSpritesDataModule(FactorGridDataModule):
    """dSprites' 64x64 binary sprites; targets: (5,) float32 latents_values of each image
    (shape 1, 2, 3 as in the file); class: the shape, 0 square, 1 ellipse, 2 heart."""

    factor_names: ClassVar[tuple[str, ...]] = FACTOR_NAMES
    class_factor: ClassVar[str] = "shape"
    classes: ClassVar[tuple[str, ...]] = SHAPES
    channels: ClassVar[int] = 1

    def read_file(self) -> GridFile:
        file = NpzFile(self.path, PUBLISHED)
        size = FILE_IMAGE_SIZE
        total = file.check("imgs", (None, size, size), "uint8")[0]
        indices = file.load("latents_classes", (total, 6), "integer")
        values = file.load("latents_values", (total, 6), "numeric")
        full = FactorGrid.of_rows(("color", *FACTOR_NAMES), indices, values)
        # With one color, leaving it out changes no row's place in the grid.
        if full is None or full.sizes[0] != 1:
            raise file.error(
                "the rows of 'latents_classes' are not every combination of one color and "
                "the other factors' indices, in the published order"
            )
        grid = FactorGrid(FACTOR_NAMES, full.values[1:])
        images = file.rows("imgs", (None, size, size), pack_bits=True)
        return GridFile(images, 1, grid)
