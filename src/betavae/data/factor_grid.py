"""Data sets that are every combination of their factors' values, one image each, stored in a
fixed order (dSprites, 3D Shapes, MPI3D): what they share once their files are read.

Row r of such a file shows the combination whose factor indices are r written in mixed radix
with the factor sizes as digits, the last factor varying fastest. So an image's factors follow
from its row, and the image of any factor indices is one row read: what a metric that changes
one factor at a time needs (`FactorGridDataModule.observations`).
"""

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from betavae.data.array_files import Rows
from betavae.data.base import BaseDataModule, split_off
from betavae.errors import UserError
from betavae.user_paths import user_path

# The published files hold 64x64 images; `image_size` only ever shrinks them.
FILE_IMAGE_SIZE = 64
# A selection whose float pixels take more than this is read from the file batch by batch
# instead of held in memory (the in-memory path holds float32 copies of every split). The
# whole of any of these sets is far more: 3D Shapes 24 GB, dSprites 12 GB, MPI3D 51 GB.
IN_MEMORY_BYTES = 2 * 2**30
# Rows read and resized at a time when a selection is loaded into memory.
_LOAD_ROWS = 4096


@dataclass(frozen=True)
class FactorGrid:
    """Each factor's values, in the order of its indices; the rows are their product."""

    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    def __len__(self) -> int:
        return math.prod(self.sizes)

    def indices(self, rows: np.ndarray) -> np.ndarray:
        """(n, K) int64 factor indices of the images in `rows`."""
        return np.stack(np.unravel_index(rows, self.sizes), axis=1).astype(np.int64)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """(n,) the row of each (n, K) combination of factor indices."""
        return np.ravel_multi_index(tuple(indices.T), self.sizes)

    def factors(self, indices: np.ndarray) -> np.ndarray:
        """(n, K) float32 values of each combination of factor indices."""
        columns = [values[column] for values, column in zip(self.values, indices.T, strict=True)]
        return np.stack(columns, axis=1).astype(np.float32)

    @classmethod
    def of_rows(
        cls, names: tuple[str, ...], indices: np.ndarray, values: np.ndarray
    ) -> "FactorGrid | None":
        """The grid of a file whose rows have these (N, K) factor indices and values; None
        unless the rows are every combination of the indices, in the grid's order."""
        if len(indices) == 0 or indices.min() < 0:
            return None
        sizes = tuple(int(size) + 1 for size in indices.max(axis=0))
        if math.prod(sizes) != len(indices):
            return None
        ordered = np.stack(np.unravel_index(np.arange(len(indices)), sizes), axis=1)
        if not np.array_equal(indices, ordered):
            return None
        # Index i of factor k is first shown by row i * (the product of the later sizes).
        strides = [math.prod(sizes[k + 1 :]) for k in range(len(sizes))]
        columns = values.T
        return cls(
            names,
            tuple(
                column[np.arange(size) * stride]
                for column, size, stride in zip(columns, sizes, strides, strict=True)
            ),
        )


@dataclass(frozen=True)
class GridFile:
    """A data set's file, read and checked: its images and what each row shows."""

    images: Rows
    """(N, 64, 64) or (N, 64, 64, C) uint8 pixels in 0..pixel_max."""
    pixel_max: int
    grid: FactorGrid


class GridImages(Dataset):
    """The chosen rows of a grid file: float images in [0, 1] (C, S, S) and their factors.

    Held in memory as uint8 when that is small enough (`IN_MEMORY_BYTES`), so the in-memory
    fast path can serve it; otherwise read from the file a batch at a time (`__getitems__`).
    """

    def __init__(
        self,
        file: GridFile,
        rows: np.ndarray,
        image_size: int,
        class_factor: str,
        classes: tuple[str, ...],
    ) -> None:
        self.file = file
        self.image_size = image_size
        self.file_rows = torch.from_numpy(rows)
        """Each example's row in the file, which `source_indices` reports."""
        indices = file.grid.indices(rows)
        self.factors = torch.from_numpy(file.grid.factors(indices))
        self.class_labels = torch.from_numpy(indices[:, file.grid.names.index(class_factor)])
        self.classes = classes
        channels = 1 if len(file.images.shape) == 3 else file.images.shape[-1]
        pixels = len(rows) * channels * image_size**2
        self._images = self._load(rows) if pixels * 4 <= IN_MEMORY_BYTES else None

    def __len__(self) -> int:
        return len(self.file_rows)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, Tensor]]:
        """A batch in one read of its rows (DataLoader calls this where a dataset has it)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if self._images is not None:
            images = self._images[index]
        else:
            images = self.read(self.file_rows[index].numpy())
        # The same division as the in-memory path, so both give the same floats.
        floats = images.float().div_(255)
        return list(zip(floats.unbind(), self.factors[index].unbind(), strict=True))

    def tensors_uint8(self) -> tuple[Tensor, Tensor, int] | None:
        """The whole selection for the in-memory fast path, if it is held in memory."""
        return None if self._images is None else (self._images, self.factors, 255)

    def read(self, rows: np.ndarray) -> Tensor:
        """uint8 (n, C, S, S) images of any rows of the file, in 0..255."""
        unique, inverse = np.unique(rows, return_inverse=True)
        pixels = torch.from_numpy(self.file.images.read(unique))
        if pixels.dim() == 3:
            pixels = pixels.unsqueeze(-1)
        pixels = pixels.permute(0, 3, 1, 2)
        scale = 255 // self.file.pixel_max
        if self.image_size != pixels.shape[-1]:
            # Area averaging: each pixel the mean of the block it replaces.
            small = F.interpolate(pixels.float(), size=self.image_size, mode="area")
            pixels = small.mul_(scale).round_().to(torch.uint8)
        else:
            pixels = pixels * scale if scale != 1 else pixels
        return pixels[torch.from_numpy(inverse)].contiguous()

    def _load(self, rows: np.ndarray) -> Tensor:
        parts = [self.read(rows[s : s + _LOAD_ROWS]) for s in range(0, len(rows), _LOAD_ROWS)]
        return torch.cat(parts)


class FactorGridDataModule(BaseDataModule):
    """A full-factorial data set read from its published file at `path`; `read_file` (each
    data set's) opens and checks the file.

    `num_examples` images of it (all when null) are chosen by `seed`, and split by
    `split_seed` into train, val and test. Targets are the (K,) factor values of each image,
    in the data set's own order and names (`factor_names`); the class is the object's shape.
    """

    factor_names: ClassVar[tuple[str, ...]]
    class_factor: ClassVar[str]
    """The factor whose index is an image's class (the object's shape), so labels, class
    names, `exclude_classes`, probes and anomaly scores work as on labelled data sets."""
    classes: ClassVar[tuple[str, ...]]
    """The name of each value of `class_factor`."""
    channels: ClassVar[int]

    def __init__(
        self,
        path: str,
        num_examples: int | None = None,
        image_size: int = FILE_IMAGE_SIZE,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        exclude_classes: Sequence[int] = (),
        labels_per_class: int | None = None,
        label_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, exclude_classes, labels_per_class, label_seed)
        self.path = user_path(path)
        self.num_examples = num_examples
        self.image_size = image_size
        self.seed = seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self._images: GridImages | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @abstractmethod
    def read_file(self) -> GridFile:
        """Open `self.path`, check that it is the published file, and describe its rows."""

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        file = self.read_file()
        rows = self._chosen_rows(len(file.grid))
        self._images = GridImages(file, rows, self.image_size, self.class_factor, self.classes)
        fractions = [self.val_fraction, self.test_fraction]
        self._use_splits(*split_off(self._images, fractions, self.split_seed))

    def _chosen_rows(self, total: int) -> np.ndarray:
        wanted = total if self.num_examples is None else self.num_examples
        if wanted > total:
            raise UserError(
                f"data.num_examples={wanted} is more than the {total:,} images of "
                f"data.path={self.path}; lower it, or set it to null for all of them"
            )
        if wanted == total:
            return np.arange(total)
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.randperm(total, generator=generator)[:wanted]
        # In file order: reading increasing rows is what every file format does fastest.
        return chosen.sort().values.numpy()

    def labels_of(self, targets: Tensor) -> Tensor:
        """The index of each target's `class_factor` value: targets are factor values."""
        grid = self._grid_images().file.grid
        column = grid.names.index(self.class_factor)
        values = torch.from_numpy(grid.values[column]).to(targets)
        return (targets[:, column, None] == values).int().argmax(1)

    def _grid_images(self) -> GridImages:
        if self._images is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run first")
        return self._images

    def ground_truth(self) -> "FactorGridDataModule":
        """The whole grid, for the metrics that choose factor values: the file holds every
        combination, so the data module itself renders any (`observations`)."""
        return self

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        """How many values each factor takes in the file (all of them, whatever the subset)."""
        return self._grid_images().file.grid.sizes

    def observations(self, factor_indices: Tensor) -> Tensor:
        """Images (n, C, S, S), floats in [0, 1] as the model sees them, of (n, K) factor
        indices (0 <= index < factor_sizes[k]): any combination, not only those chosen by
        `num_examples`, since the file holds them all. For metrics that change one factor
        at a time; raises ValueError for an index out of range."""
        images = self._grid_images()
        rows = images.file.grid.rows(factor_indices.cpu().numpy())
        return images.read(rows).float().div_(255)
