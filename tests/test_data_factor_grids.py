"""dSprites, 3D Shapes and MPI3D read from small files written in their published formats.

Each test file is a smaller full grid than the published one, with the same array names,
dtypes and image shapes; every image carries its own row number in its first pixels, so a test
can tell which row of the file an example, a split or an observation came from.
"""

import json
import math
import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import TINY_RUN, run_cli
from omegaconf.errors import MissingMandatoryValue
from torch.utils.data import DataLoader

import betavae.data.factor_grid as factor_grid
import betavae.data.mpi3d as mpi3d
from betavae.config.schema import validate
from betavae.data import DSpritesDataModule, MPI3DDataModule, Shapes3DDataModule
from betavae.data.base import class_labels, class_names, source_indices
from betavae.data.in_memory import InMemoryBatches
from betavae.errors import UserError

# dSprites' factors color, shape, scale, orientation, posX, posY with fewer values each.
DSPRITES_SIZES = (1, 3, 2, 5, 5, 4)  # 600 images, as many as TINY_RUN uses
SHAPES3D_SIZES = (2, 2, 2, 2, 4, 3)
MPI3D_SIZES = (2, 6, 1, 1, 2, 2, 3)


def grid_indices(sizes: tuple[int, ...]) -> np.ndarray:
    """Every combination of indices, the last varying fastest: the files' row order."""
    return np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), axis=1)


def binary_images(count: int) -> np.ndarray:
    """uint8 (count, 64, 64) in {0, 1}: a square, and the row number in bits along row 0."""
    images = np.zeros((count, 64, 64), dtype=np.uint8)
    images[:, 20:36, 24:40] = 1
    for bit in range(16):
        images[:, 0, bit] = (np.arange(count) >> bit) & 1
    return images


def rgb_images(count: int) -> np.ndarray:
    """uint8 (count, 64, 64, 3): a grey floor, and the row number in the top-left pixel."""
    images = np.full((count, 64, 64, 3), 100, dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(count) % 256
    images[:, 0, 0, 1] = np.arange(count) // 256
    return images


def dsprites_values(indices: np.ndarray) -> np.ndarray:
    grids = [
        np.array([1.0]),
        np.array([1.0, 2.0, 3.0]),
        np.linspace(0.5, 1.0, DSPRITES_SIZES[2]),
        np.linspace(0.0, 2 * np.pi, DSPRITES_SIZES[3]),
        np.linspace(0.0, 1.0, DSPRITES_SIZES[4]),
        np.linspace(0.0, 1.0, DSPRITES_SIZES[5]),
    ]
    return np.stack([grid[column] for grid, column in zip(grids, indices.T, strict=True)], axis=1)


def write_dsprites(path: Path, compressed: bool = True, **replace: np.ndarray) -> Path:
    """dSprites' archive: imgs uint8 (N, 64, 64), latents_values float64 (N, 6),
    latents_classes int64 (N, 6) and a pickled metadata dict, compressed like the original."""
    indices = grid_indices(DSPRITES_SIZES)
    arrays = {
        "imgs": binary_images(len(indices)),
        "latents_values": dsprites_values(indices),
        "latents_classes": indices.astype(np.int64),
        "metadata": np.array({"latents_sizes": np.array(DSPRITES_SIZES)}, dtype=object),
        **replace,
    }
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def shapes3d_labels(indices: np.ndarray) -> np.ndarray:
    grids = [np.linspace(0.0, 0.9, 10)[:2]] * 3 + [
        np.linspace(0.75, 1.25, SHAPES3D_SIZES[3]),
        np.arange(4.0),
        np.linspace(-30.0, 30.0, SHAPES3D_SIZES[5]),
    ]
    return np.stack([grid[column] for grid, column in zip(grids, indices.T, strict=True)], axis=1)


def write_shapes3d(path: Path, **replace: np.ndarray) -> Path:
    """3dshapes.h5: images uint8 (N, 64, 64, 3) and labels float64 (N, 6)."""
    indices = grid_indices(SHAPES3D_SIZES)
    arrays = {"images": rgb_images(len(indices)), "labels": shapes3d_labels(indices), **replace}
    with h5py.File(path, "w") as file:
        for name, array in arrays.items():
            file.create_dataset(name, data=array)
    return path


def write_mpi3d(path: Path, count: int = math.prod(MPI3D_SIZES)) -> Path:
    """mpi3d_*.npz: one uncompressed array, images uint8 (N, 64, 64, 3)."""
    np.savez(path, images=rgb_images(count))
    return path


@pytest.fixture
def small_mpi3d(monkeypatch: pytest.MonkeyPatch) -> None:
    """MPI3D's grid shrunk to what the small test file holds."""
    monkeypatch.setattr(mpi3d, "FACTOR_SIZES", MPI3D_SIZES)


def binary_rows(images: torch.Tensor) -> list[int]:
    bits = (images[:, 0, 0, :16] > 0.5).long()
    return (bits << torch.arange(16)).sum(1).tolist()


def rgb_rows(images: torch.Tensor) -> list[int]:
    pixel = (images[:, :, 0, 0] * 255).round().long()
    return (pixel[:, 0] + 256 * pixel[:, 1]).tolist()


def everything(module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, targets, source indices) of all splits, in split order."""
    split = module.split_set("all")
    images, targets = zip(*(split[i] for i in range(len(split))), strict=True)
    return torch.stack(images), torch.stack(targets), source_indices(split)


def test_dsprites_images_factors_labels_and_splits_follow_the_file(tmp_path):
    path = write_dsprites(tmp_path / "dsprites.npz")
    module = DSpritesDataModule(str(path), num_workers=0, val_fraction=0.2, test_fraction=0.1)
    module.setup("fit")

    total = math.prod(DSPRITES_SIZES)
    images, targets, rows = everything(module)
    indices = grid_indices(DSPRITES_SIZES)[rows.numpy()]
    assert module.image_shape == (1, 64, 64) and images.shape == (total, 1, 64, 64)
    assert [len(s) for s in (module.train_set, module.val_set, module.test_set)] == [420, 120, 60]
    assert sorted(rows.tolist()) == list(range(total)), "every row in exactly one split"
    assert binary_rows(images) == rows.tolist(), "each example is the image of its row"
    assert set(images.unique().tolist()) == {0.0, 1.0}
    expected = torch.from_numpy(dsprites_values(indices)[:, 1:]).float()
    assert torch.equal(targets, expected), "color left out, the other values as in the file"
    assert module.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert module.factor_sizes == DSPRITES_SIZES[1:]
    assert torch.equal(class_labels(module.split_set("all")), torch.from_numpy(indices[:, 1]))
    assert class_names(module.train_set) == ["square", "ellipse", "heart"]


def test_splits_and_the_subset_are_seeded(tmp_path):
    path = str(write_dsprites(tmp_path / "dsprites.npz"))

    def rows(**kwargs) -> list[list[int]]:
        module = DSpritesDataModule(path, num_workers=0, **kwargs)
        module.setup("fit")
        return [source_indices(module.split_set(s)).tolist() for s in ("train", "val", "test")]

    def chosen(splits: list[list[int]]) -> set[int]:
        return {row for split in splits for row in split}

    subset = rows(num_examples=100, seed=1)
    assert subset == rows(num_examples=100, seed=1)
    assert [len(split) for split in subset] == [80, 10, 10]
    assert len(chosen(subset)) == 100 and max(chosen(subset)) < math.prod(DSPRITES_SIZES)
    assert chosen(subset) != chosen(rows(num_examples=100, seed=2))
    resplit = rows(num_examples=100, seed=1, split_seed=5)
    assert resplit != subset and chosen(resplit) == chosen(subset), "split_seed only reshuffles"


def test_observations_are_any_combination_of_the_whole_grid(tmp_path):
    module = DSpritesDataModule(str(write_dsprites(tmp_path / "d.npz")), num_examples=20)
    module.setup("fit")
    indices = torch.tensor([[2, 1, 3, 0, 2], [0, 0, 0, 0, 0], [2, 1, 4, 4, 3]])

    observed = module.observations(indices)

    assert observed.shape == (3, 1, 64, 64) and observed.dtype == torch.float32
    assert binary_rows(observed) == [2 * 200 + 100 + 3 * 20 + 2, 0, math.prod(DSPRITES_SIZES) - 1]
    with pytest.raises(ValueError):
        module.observations(torch.tensor([[3, 0, 0, 0, 0]]))


def test_uncompressed_archive_is_mapped_and_reads_the_same(tmp_path):
    modules = [
        DSpritesDataModule(str(write_dsprites(tmp_path / f"{c}.npz", compressed=c)))
        for c in (True, False)
    ]
    for module in modules:
        module.setup("fit")
    packed, mapped = (m._grid_images().file.images for m in modules)

    assert type(packed).__name__ == "InMemoryRows" and type(mapped).__name__ == "MappedRows"
    assert torch.equal(*(everything(m)[0] for m in modules))
    assert mapped.read(np.array([5])).shape == (1, 64, 64)


def test_smaller_image_size_averages_blocks_of_pixels(tmp_path):
    path = str(write_dsprites(tmp_path / "d.npz"))
    full, small = (DSpritesDataModule(path, image_size=s) for s in (64, 16))
    for module in (full, small):
        module.setup("fit")
    big, little = everything(full)[0], everything(small)[0]

    assert small.image_shape == (1, 16, 16) and little.shape[1:] == (1, 16, 16)
    # A 16x16 square on a 4-pixel grid: whole blocks, white.
    assert torch.equal(little[:, 0, 5:9, 6:10], torch.ones(len(little), 4, 4))
    block_means = big.view(-1, 1, 16, 4, 16, 4).mean(dim=(3, 5))
    assert (little - block_means).abs().max() <= 0.5 / 255


def test_large_selections_are_read_from_the_file_batch_by_batch(tmp_path, monkeypatch):
    path = str(write_shapes3d(tmp_path / "3dshapes.h5"))
    in_memory = Shapes3DDataModule(path, num_workers=0, batch_size=50)
    in_memory.setup("fit")
    monkeypatch.setattr(factor_grid, "IN_MEMORY_BYTES", 0)
    from_file = Shapes3DDataModule(path, num_workers=0, batch_size=50)
    from_file.setup("fit")

    assert isinstance(in_memory.val_dataloader(), InMemoryBatches)
    assert isinstance(from_file.val_dataloader(), DataLoader)
    batches = zip(from_file.val_dataloader(), in_memory.val_dataloader(), strict=True)
    for (images, targets), (expected_images, expected_targets) in batches:
        assert torch.equal(images, expected_images) and torch.equal(targets, expected_targets)


def test_workers_open_the_file_again_and_read_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(factor_grid, "IN_MEMORY_BYTES", 0)
    module = Shapes3DDataModule(str(write_shapes3d(tmp_path / "3dshapes.h5")), batch_size=16)
    module.setup("fit")
    module.observations(torch.zeros(1, 6, dtype=torch.long))  # the file open in this process

    loader = DataLoader(module.val_set, batch_size=8, num_workers=1)
    read = torch.cat([images for images, _ in loader])
    copied = pickle.loads(pickle.dumps(module.val_set))  # as a spawned worker gets it

    assert rgb_rows(read) == source_indices(module.val_set).tolist()
    assert torch.equal(torch.stack([image for image, _ in copied]), read)


def test_shapes3d_rgb_images_labels_and_shape_classes(tmp_path):
    module = Shapes3DDataModule(str(write_shapes3d(tmp_path / "3dshapes.h5")), num_workers=0)
    module.setup("fit")

    images, targets, rows = everything(module)
    indices = grid_indices(SHAPES3D_SIZES)[rows.numpy()]
    assert module.image_shape == (3, 64, 64) and images.shape[1:] == (3, 64, 64)
    assert rgb_rows(images) == rows.tolist()
    assert images[:, :, 10, 10].eq(100 / 255).all()
    assert torch.equal(targets, torch.from_numpy(shapes3d_labels(indices)).float())
    assert module.factor_names[4] == "shape" and module.factor_sizes == SHAPES3D_SIZES
    assert torch.equal(class_labels(module.split_set("all")), torch.from_numpy(indices[:, 4]))
    assert class_names(module.test_set) == ["cube", "cylinder", "sphere", "capsule"]
    assert rgb_rows(module.observations(torch.tensor([[1, 0, 1, 1, 3, 2]]))) == [
        96 + 24 + 12 + 9 + 2
    ]


def test_mpi3d_factors_follow_from_the_row(tmp_path, small_mpi3d):
    module = MPI3DDataModule(str(write_mpi3d(tmp_path / "mpi3d_toy.npz")), num_workers=0)
    module.setup("fit")

    images, targets, rows = everything(module)
    indices = grid_indices(MPI3D_SIZES)[rows.numpy()]
    assert rgb_rows(images) == rows.tolist()
    assert torch.equal(targets, torch.from_numpy(indices).float())
    assert module.factor_names == mpi3d.FACTOR_NAMES and module.factor_sizes == MPI3D_SIZES
    assert torch.equal(class_labels(module.split_set("all")), torch.from_numpy(indices[:, 1]))
    assert class_names(module.val_set)[5] == "sphere"
    assert type(module._grid_images().file.images).__name__ == "MappedRows"


def test_excluding_a_shape_leaves_it_out_of_every_split(tmp_path):
    path = str(write_dsprites(tmp_path / "d.npz"))
    module = DSpritesDataModule(path, exclude_classes=[2])
    module.setup("fit")

    assert class_labels(module.split_set("all")).unique().tolist() == [0, 1]
    assert (everything(module)[1][:, 0] != 3.0).all()


def one_line_error(module) -> str:
    with pytest.raises(UserError) as raised:
        module.setup("fit")
    message = str(raised.value)
    assert "\n" not in message
    return message


DSPRITES_SOURCE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz, published at https://"


@pytest.mark.parametrize(
    ("module", "name", "source"),
    [
        (DSpritesDataModule, "d.npz", DSPRITES_SOURCE),
        (Shapes3DDataModule, "3dshapes.h5", "3dshapes.h5, published at https://"),
        (MPI3DDataModule, "mpi3d.npz", "mpi3d_real.npz, published at https://"),
    ],
)
def test_a_missing_or_foreign_file_is_one_line_naming_the_published_file(
    tmp_path, module, name, source
):
    missing = one_line_error(module(str(tmp_path / name)))
    (tmp_path / name).write_text("not data")
    foreign = one_line_error(module(str(tmp_path / name)))

    assert missing.startswith(f"data.path={tmp_path / name}: no such file; data=")
    assert source in missing
    assert re.match(r"data.path=\S+: not an (.npz|HDF5) file \(.+\); data=\w+ reads", foreign)


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (
            lambda p: write_dsprites(p, imgs=np.zeros((600, 32, 32), np.uint8)),
            "'imgs' is uint8 600x32x32, not uint8 Nx64x64",
        ),
        (
            lambda p: np.savez(p, imgs=binary_images(600), latents_values=np.zeros((600, 6))),
            "no array 'latents_classes' (it has 'imgs', 'latents_values')",
        ),
        (
            lambda p: write_dsprites(p, latents_classes=np.zeros((600, 5), np.int64)),
            "'latents_classes' is int64 600x5, not integer 600x6",
        ),
        (
            lambda p: write_dsprites(p, latents_values=np.zeros((600, 6), "U1")),
            "'latents_values' is <U1 600x6, not numeric 600x6",
        ),
        (
            lambda p: write_dsprites(
                p, latents_classes=grid_indices(DSPRITES_SIZES)[::-1].astype(np.int64)
            ),
            "the rows of 'latents_classes' are not every combination",
        ),
    ],
)
def test_a_malformed_dsprites_file_is_one_line_naming_the_array(tmp_path, write, expected):
    path = tmp_path / "dsprites.npz"
    write(path)

    message = one_line_error(DSpritesDataModule(str(path)))

    assert message.startswith(f"data.path={path}: {expected}")
    assert message.endswith(DSPRITES_SOURCE + "github.com/deepmind/dsprites-dataset")


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        ({"images": rgb_images(192)[..., 0]}, "'images' is uint8 192x64x64, not uint8 Nx64x64x3"),
        ({"labels": np.zeros((192, 5))}, "'labels' is float64 192x5, not numeric 192x6"),
        ({"labels": np.zeros((192, 6))}, "the rows of 'labels' are not every combination"),
    ],
)
def test_a_malformed_shapes3d_file_is_one_line_naming_the_dataset(tmp_path, replace, expected):
    path = write_shapes3d(tmp_path / "3dshapes.h5", **replace)

    assert one_line_error(Shapes3DDataModule(str(path))).startswith(f"data.path={path}: {expected}")


def test_mpi3d_of_another_size_and_too_many_examples_are_one_line(tmp_path, small_mpi3d):
    path = write_mpi3d(tmp_path / "mpi3d.npz", count=100)
    wrong_count = one_line_error(MPI3DDataModule(str(path)))
    too_many = one_line_error(MPI3DDataModule(str(write_mpi3d(path)), num_examples=145))

    assert wrong_count.startswith(f"data.path={path}: 'images' holds 100 images, not 144")
    assert too_many == (
        f"data.num_examples=145 is more than the 144 images of data.path={path}; "
        "lower it, or set it to null for all of them"
    )


@pytest.mark.parametrize("data", ["dsprites", "shapes3d", "mpi3d"])
def test_the_config_requires_a_path_and_checks_the_ranges(compose_train, data):
    with pytest.raises(MissingMandatoryValue, match=r"data\.path"):
        validate(compose_train([f"data={data}"]))
    ok = validate(compose_train([f"data={data}", "data.path=/x", "data.num_examples=50"]))
    assert ok.data.num_examples == 50 and ok.data.image_size == 64
    for override, message in (
        ("data.num_examples=5", "data.num_examples=5 is not allowed: null (all) or an integer"),
        ("data.image_size=128", "data.image_size=128 is not allowed: an integer from 8 to 64"),
    ):
        with pytest.raises(UserError, match=re.escape(message)):
            validate(compose_train([f"data={data}", "data.path=/x", override]))


@pytest.mark.slow
def test_training_on_dsprites_from_its_file_measures_mig(tmp_path, data_dir):
    path = write_dsprites(tmp_path / "dsprites.npz")
    args = [*TINY_RUN, "data=dsprites", f"data.path={path}", "trainer.max_epochs=1"]
    result = run_cli([*args, "hydra.run.dir=run"], cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert 0 <= metrics["test/mig"] <= 1
    assert {f"test/mig_gap/{name}" for name in DSpritesDataModule.factor_names} <= set(metrics)
    assert "Training a mlp VAE" in result.stdout and "on 480 images 1x32x32" in result.stdout


def test_a_batch_s_classes_are_the_shape_indices_of_its_factor_values(tmp_path):
    """What a semi-supervised run reads of each batch: targets hold the factors' values
    (dSprites' shapes are 1, 2, 3), the class is the shape's index."""
    module = DSpritesDataModule(str(write_dsprites(tmp_path / "dsprites.npz")), num_workers=0)
    module.setup("fit")
    _, targets = next(iter(module.split_dataloader("train")))

    labels = module.labels_of(targets)

    assert torch.equal(labels, class_labels(module.train_set)[: len(labels)])
    assert set(labels.tolist()) == {0, 1, 2}
