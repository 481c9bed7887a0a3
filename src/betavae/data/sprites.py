"""Procedural dSprites-like shapes: rendered locally in seconds, so the default run needs no files.

Each image shows one white sprite on black, fully described by five factors drawn uniformly
from fixed grids, like dSprites: shape (square, ellipse, heart), scale, orientation and the
x/y position of its centre. Knowing the true factors is what makes disentanglement measurable.
"""

import fcntl
import math
from collections.abc import Callable, Sequence

import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch import Tensor
from torch.utils.data import Dataset

from betavae.data.base import HeldOutTestDataModule
from betavae.lifecycle.atomic_files import remove_staging_files, replace_atomically
from betavae.user_paths import user_path

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_VALUES: tuple[Tensor, ...] = (
    torch.tensor([0.0, 1.0, 2.0]),
    torch.linspace(0.5, 1.0, 6),
    torch.linspace(0.0, 2 * math.pi, 41)[:-1],
    torch.linspace(0.0, 1.0, 32),
    torch.linspace(0.0, 1.0, 32),
)

# Half the side of the square at scale 1, as a fraction of the image width: a 0.3-wide sprite.
_HALF_SIZE = 0.15
# A rotated square reaches sqrt(2) half-sides from its centre, the farthest of the three shapes;
# keeping the centre that far from the border keeps every sprite whole (to the pixel) in any pose.
_MARGIN = _HALF_SIZE * math.sqrt(2)
# Bounds the temporaries of one rendering step to tens of MB, whatever the image size.
_PIXELS_PER_CHUNK = 2**21


def _square(u: Tensor, v: Tensor) -> Tensor:
    return (u.abs() <= 1) & (v.abs() <= 1)


def _ellipse(u: Tensor, v: Tensor) -> Tensor:
    return u**2 + (v / 0.5) ** 2 <= 1


def _heart(u: Tensor, v: Tensor) -> Tensor:
    # The classic curve (x²+y²−1)³ = x²y³ spans x ∈ ±1.14, y ∈ [−1, 1.24] with y pointing up;
    # scaling and shifting it fills the same [−1, 1]² box as the square, point down.
    x = 1.14 * u
    y = 0.12 - 1.14 * v
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


_SHAPE_TESTS: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (_square, _ellipse, _heart)


def render_sprites(num_examples: int, image_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Draw factors with a generator seeded by `seed` and render them.

    Returns binary images, uint8 (N, 1, S, S) in {0, 1}, and their factors, float32 (N, 5),
    in the order of `FACTOR_NAMES`. The same arguments give the same tensors on every call.
    """
    generator = torch.Generator().manual_seed(seed)
    factors = torch.stack(
        [
            values[torch.randint(len(values), (num_examples,), generator=generator)]
            for values in FACTOR_VALUES
        ],
        dim=1,
    )
    return render_factors(factors, image_size), factors


def render_factors(factors: Tensor, image_size: int) -> Tensor:
    """Binary images, uint8 (N, 1, S, S) in {0, 1}, of the sprites with these factor values,
    float (N, 5) in the order of `FACTOR_NAMES`: what the metrics that hold a factor fixed ask for.
    """
    images = torch.zeros((len(factors), 1, image_size, image_size), dtype=torch.uint8)
    # Every sprite lies within _MARGIN of its centre, so only a window around it needs testing:
    # at any image size that is about a fifth of the pixels.
    window = min(image_size, math.ceil(2 * _MARGIN * image_size) + 2)
    chunk = max(1, _PIXELS_PER_CHUNK // window**2)
    for start in range(0, len(factors), chunk):
        stop = start + chunk
        _paint(images[start:stop, 0], factors[start:stop], window)
    return images


def _paint(canvas: Tensor, factors: Tensor, window: int) -> None:
    """Map each window's pixel centres into the sprite's own frame and test them on the shape."""
    image_size = canvas.shape[-1]
    shape, scale, angle, pos_x, pos_y = factors.unbind(dim=1)
    # Sprite centres in pixel units; positions 0..1 span the image less a margin on each side.
    travel = (1 - 2 * _MARGIN) * image_size
    centre_x = _MARGIN * image_size + travel * pos_x
    centre_y = _MARGIN * image_size + travel * pos_y
    offsets = torch.arange(window)
    cols = _window_start(centre_x, window, image_size)[:, None] + offsets
    rows = _window_start(centre_y, window, image_size)[:, None] + offsets
    dx = (cols + 0.5 - centre_x[:, None])[:, None, :]
    dy = (rows + 0.5 - centre_y[:, None])[:, :, None]
    cos = torch.cos(angle)[:, None, None]
    sin = torch.sin(angle)[:, None, None]
    size = (_HALF_SIZE * image_size * scale)[:, None, None]
    u = (cos * dx + sin * dy) / size
    v = (cos * dy - sin * dx) / size
    inside = torch.zeros(u.shape, dtype=torch.bool)
    for shape_id, test in enumerate(_SHAPE_TESTS):
        chosen = shape == shape_id
        inside[chosen] = test(u[chosen], v[chosen])
    batch = torch.arange(len(canvas))[:, None, None]
    canvas[batch, rows[:, :, None], cols[:, None, :]] = inside.to(torch.uint8)


def _window_start(centre: Tensor, window: int, image_size: int) -> Tensor:
    """First pixel of a window around `centre`, shifted as needed to stay within the image."""
    return (centre - window / 2).round().long().clamp(0, image_size - window)


class SpritesDataset(Dataset):
    """Whole-set tensors in memory: an index is one tensor slice, not a file read or a decode."""

    # The class of a sprite is its shape (factor 0), in the order of _SHAPE_TESTS.
    classes = ("square", "ellipse", "heart")

    def __init__(self, images: Tensor, factors: Tensor) -> None:
        self.images = images
        self.factors = factors
        # The class of a sprite, for data.exclude_classes and label-based evaluation: its shape.
        self.class_labels = factors[:, 0].long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        # Pixels are already 0 or 1, so a cast is the whole conversion to [0, 1] floats.
        return self.images[index].float(), self.factors[index]

    def tensors_uint8(self) -> tuple[Tensor, Tensor, int]:
        """The whole set for the in-memory fast path; pixels are 0 or 1, so `pixel_max` is 1."""
        return self.images, self.factors, 1


class SpritesDataModule(HeldOutTestDataModule):
    """Renders the sprites once, caches them under `data_dir`, and splits them by `split_seed`.

    `seed` fixes which sprites exist; `split_seed` only fixes which of them are held out.
    """

    factor_names: tuple[str, ...] = FACTOR_NAMES
    # A sprite's class is its shape (see SpritesDataset).
    class_factor = "shape"

    def __init__(
        self,
        data_dir: str,
        num_examples: int = 20000,
        image_size: int = 64,
        seed: int = 0,
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
        self.num_examples = num_examples
        self.image_size = image_size
        self.seed = seed
        name = f"sprites-s{image_size}-n{num_examples}-seed{seed}.pt"
        self.cache_path = user_path(data_dir) / "sprites" / name

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, self.image_size, self.image_size)

    def labels_of(self, targets: Tensor) -> Tensor:
        """The shape (factor 0), whose values are the class ids."""
        return targets[:, FACTOR_NAMES.index(self.class_factor)].long()

    def prepare_data(self) -> None:
        if self.cache_path.exists():
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        # One process draws, and the others that need the same sprites at the same time (the
        # jobs of a parallel sweep on a new machine) wait for its file instead of drawing them
        # again. The lock file goes once the cache is there; until then there is only one.
        lock_path = self.cache_path.with_suffix(".drawing")
        with lock_path.open("w") as lock:
            locked = True
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._say(f"Waiting for another process drawing sprites into {self.cache_path}")
                fcntl.flock(lock, fcntl.LOCK_EX)
            except OSError:  # a file system without locks (an NFS mount without lockd)
                locked = False  # each process draws, and the atomic rename keeps the file whole
            if not self.cache_path.exists():
                if locked:  # drawings left unfinished by killed drawers (tens of MB each)
                    remove_staging_files(self.cache_path.parent, self.cache_path.name)
                self._draw()
            lock_path.unlink(missing_ok=True)

    def _draw(self) -> None:
        self._say(
            f"Drawing {self.num_examples:,} sprites of {self.image_size}x{self.image_size} "
            f"into {self.cache_path.parent} (once: later runs read them from there)"
        )
        images, factors = render_sprites(self.num_examples, self.image_size, self.seed)
        # Renamed into place once written, so a process that finds the cache never reads a
        # half-written one; not synced: a cache lost to a power failure is drawn again.
        sprites = {"images": images, "factors": factors}
        replace_atomically(self.cache_path, lambda file: torch.save(sprites, file), durable=False)

    @staticmethod
    def _say(line: str) -> None:
        """The first run takes seconds here: say what happens (once, not on every DDP rank)."""
        if rank_zero_only.rank == 0:
            print(line, flush=True)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        # Outside a Trainer nobody may have called prepare_data; it is a no-op once cached.
        self.prepare_data()
        cached = torch.load(self.cache_path, weights_only=True)
        dataset = SpritesDataset(cached["images"], cached["factors"])
        self._use_whole(dataset)

    def ground_truth(self) -> "SpritesGroundTruth":
        """The process that draws these sprites, for the metrics that choose factor values."""
        return SpritesGroundTruth(self.image_size)


class SpritesGroundTruth:
    """The sprites as the process that makes them, for the disentanglement metrics that hold one
    factor fixed and vary the others (a `betavae.evaluation.ground_truth.GroundTruthData`): any
    combination of factors is rendered on demand, as dSprites' full grid would be looked up."""

    factor_names: tuple[str, ...] = FACTOR_NAMES
    factor_sizes: tuple[int, ...] = tuple(len(values) for values in FACTOR_VALUES)

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def observations(self, factor_indices: Tensor) -> Tensor:
        """Float images (N, 1, S, S) in [0, 1] for factor indices (N, 5) into `FACTOR_VALUES`."""
        columns = zip(FACTOR_VALUES, factor_indices.T, strict=True)
        values = [grid[column] for grid, column in columns]
        return render_factors(torch.stack(values, dim=1), self.image_size).float()
