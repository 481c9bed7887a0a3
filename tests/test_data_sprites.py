"""The procedural sprites: the factors really drive the pictures, and the cache and splits hold."""

import errno
import fcntl
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import Tensor

import betavae.data.sprites as sprites
from betavae.data import SpritesDataModule, render_sprites

SIZE = 64


@pytest.fixture(scope="module")
def rendered() -> tuple[Tensor, Tensor]:
    return render_sprites(3000, SIZE, seed=0)


def centroids(images: Tensor) -> tuple[Tensor, Tensor]:
    """Mean column and mean row of each image's lit pixels."""
    pixels = images[:, 0].float()
    area = pixels.sum(dim=(1, 2))
    coords = torch.arange(SIZE, dtype=torch.float32)
    cx = (pixels.sum(dim=1) * coords).sum(dim=1) / area
    cy = (pixels.sum(dim=2) * coords).sum(dim=1) / area
    return cx, cy


def correlation(a: Tensor, b: Tensor) -> float:
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def test_same_seed_same_sprites_other_seed_other_sprites() -> None:
    images, factors = render_sprites(200, 32, seed=5)
    again_images, again_factors = render_sprites(200, 32, seed=5)
    other_images, other_factors = render_sprites(200, 32, seed=6)
    assert torch.equal(images, again_images) and torch.equal(factors, again_factors)
    assert not torch.equal(images, other_images)
    assert not torch.equal(factors, other_factors)


def test_images_are_binary_and_factors_lie_on_their_grids(rendered: tuple[Tensor, Tensor]) -> None:
    images, factors = rendered
    assert images.shape == (3000, 1, SIZE, SIZE) and images.dtype == torch.uint8
    assert factors.shape == (3000, 5) and factors.dtype == torch.float32
    assert set(images.unique().tolist()) == {0, 1}
    assert (images.sum(dim=(1, 2, 3)) > 0).all(), "every image shows a sprite"
    for column, values in enumerate(sprites.FACTOR_VALUES):
        on_grid = (factors[:, column, None] - values[None, :]).abs().min(dim=1).values < 1e-6
        assert on_grid.all()
    assert [len(v) for v in sprites.FACTOR_VALUES] == [3, 6, 40, 32, 32]
    assert sprites.FACTOR_VALUES[2].max() < 2 * torch.pi


def test_pos_x_moves_the_sprite_right_and_pos_y_moves_it_down(
    rendered: tuple[Tensor, Tensor],
) -> None:
    images, factors = rendered
    cx, cy = centroids(images)
    pos_x, pos_y = factors[:, 3], factors[:, 4]
    assert correlation(pos_x, cx) > 0.9
    assert correlation(pos_y, cy) > 0.9
    assert abs(correlation(pos_x, cy)) < 0.1, "pos_x must not move the sprite vertically"
    assert cx[pos_x < 0.2].mean() + 20 < cx[pos_x > 0.8].mean()
    assert cy[pos_y < 0.2].mean() + 20 < cy[pos_y > 0.8].mean()


def test_sprites_stay_roughly_inside_and_are_a_third_of_the_width_at_most(
    rendered: tuple[Tensor, Tensor],
) -> None:
    images, factors = rendered
    border = images[:, 0, [0, -1], :].sum() + images[:, 0, :, [0, -1]].sum()
    assert border < 0.001 * images.sum()
    squares = images[(factors[:, 0] == 0) & (factors[:, 1] == 1.0)]
    side = squares.sum(dim=(1, 2, 3)).float().sqrt().mean()
    assert SIZE / 4 <= side <= SIZE / 3


def test_area_grows_with_scale_and_differs_by_shape(rendered: tuple[Tensor, Tensor]) -> None:
    images, factors = rendered
    area = images.sum(dim=(1, 2, 3)).float()
    shape, scale = factors[:, 0], factors[:, 1]
    for shape_id in range(3):
        small = area[(shape == shape_id) & (scale == 0.5)].mean()
        large = area[(shape == shape_id) & (scale == 1.0)].mean()
        assert large > 3 * small, f"shape {shape_id}: area should grow like scale²"
    at_full_scale = [area[(shape == s) & (scale == 1.0)].mean() for s in range(3)]
    square, ellipse, heart = at_full_scale
    assert square > heart > ellipse * 1.3


def test_render_speed_is_interactive() -> None:
    # The default run renders 20000 images at 64x64 before training; that must take seconds.
    start = time.perf_counter()
    render_sprites(5000, 64, seed=1)
    assert time.perf_counter() - start < 5


def make_module(data_dir: Path, **overrides: object) -> SpritesDataModule:
    settings = {"num_examples": 500, "image_size": 32, "batch_size": 64, **overrides}
    return SpritesDataModule(str(data_dir), **settings)  # type: ignore[arg-type]


def test_image_shape_is_known_before_setup(tmp_path: Path) -> None:
    module = make_module(tmp_path)
    assert module.image_shape == (1, 32, 32)
    assert module.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert not (tmp_path / "sprites").exists()


def test_cache_is_written_once_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_module(tmp_path, seed=3)
    first.prepare_data()
    cache = tmp_path / "sprites" / "sprites-s32-n500-seed3.pt"
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name], "no temp file left"
    saved = torch.load(cache, weights_only=True)
    expected_images, expected_factors = render_sprites(500, 32, seed=3)
    assert torch.equal(saved["images"], expected_images)
    assert torch.equal(saved["factors"], expected_factors)

    def refuse(*args: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(sprites, "render_sprites", refuse)
    second = make_module(tmp_path, seed=3)
    second.prepare_data()
    second.setup("fit")
    images = torch.stack([second.train_set[i][0] for i in range(3)])
    indices = second.train_set.indices[:3]
    assert torch.equal(images, expected_images[indices].float())


def test_a_module_finding_the_sprites_being_drawn_waits_for_them_instead_of_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = make_module(tmp_path)
    cache = module.cache_path
    cache.parent.mkdir(parents=True)
    # What the other process draws: recognisably not what this module would draw.
    drawn = {"images": torch.zeros(500, 1, 32, 32, dtype=torch.uint8), "factors": torch.ones(500)}

    def refuse(*args: object) -> None:
        raise AssertionError("the sprites were drawn twice")

    monkeypatch.setattr(sprites, "render_sprites", refuse)
    printed = ""
    with cache.with_suffix(".drawing").open("w") as other:  # another process is drawing
        fcntl.flock(other, fcntl.LOCK_EX)
        waiting = threading.Thread(target=module.prepare_data)
        waiting.start()
        deadline = time.monotonic() + 30
        while "Waiting" not in printed:
            assert time.monotonic() < deadline, printed
            time.sleep(0.05)
            printed += capsys.readouterr().out
        assert waiting.is_alive()
        torch.save(drawn, cache)
    waiting.join(timeout=30)

    assert not waiting.is_alive()
    printed += capsys.readouterr().out
    assert printed == f"Waiting for another process drawing sprites into {cache}\n"
    assert torch.equal(torch.load(cache, weights_only=True)["images"], drawn["images"])
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name], "no lock file left"


def test_sprites_are_drawn_where_the_file_system_has_no_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(*args: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    module = make_module(tmp_path)
    module.prepare_data()

    saved = torch.load(module.cache_path, weights_only=True)
    assert torch.equal(saved["images"], render_sprites(500, 32, seed=0)[0])
    assert sorted(p.name for p in module.cache_path.parent.iterdir()) == [module.cache_path.name]


def test_a_drawing_left_unfinished_by_a_killed_process_is_removed_by_the_next_drawer(
    tmp_path: Path,
) -> None:
    module = make_module(tmp_path)
    cache = module.cache_path
    cache.parent.mkdir(parents=True)
    unfinished = cache.with_name(f".{cache.name}.tmp-4242")  # process 4242 was killed saving
    unfinished.write_bytes(b"half of a torch.save")
    other_sprites = cache.with_name(".sprites-s32-n500-seed1.pt.tmp-4243")  # not this cache's
    other_sprites.write_bytes(b"")

    module.prepare_data()

    assert sorted(p.name for p in cache.parent.iterdir()) == [other_sprites.name, cache.name]
    assert torch.equal(
        torch.load(cache, weights_only=True)["images"], render_sprites(500, 32, seed=0)[0]
    )


def test_setup_without_prepare_data_builds_the_cache(tmp_path: Path) -> None:
    module = make_module(tmp_path)
    module.setup("fit")
    assert (tmp_path / "sprites" / "sprites-s32-n500-seed0.pt").is_file()


def test_splits_are_disjoint_complete_and_repeatable(tmp_path: Path) -> None:
    first, second = make_module(tmp_path), make_module(tmp_path)
    other_seed = make_module(tmp_path, split_seed=1)
    for module in (first, second, other_seed):
        module.setup("fit")
        module.setup("test")  # a second call must not re-split
    parts = [set(s.indices) for s in (first.train_set, first.val_set, first.test_set)]
    assert [len(p) for p in parts] == [400, 50, 50]
    assert set().union(*parts) == set(range(500))
    assert sum(len(p) for p in parts) == 500
    for name in ("train_set", "val_set", "test_set"):
        assert getattr(first, name).indices == getattr(second, name).indices
    assert first.val_set.indices != other_seed.val_set.indices


def test_batches_follow_the_contract(tmp_path: Path) -> None:
    module = make_module(tmp_path)
    module.setup("fit")
    images, factors = next(iter(module.train_dataloader()))
    assert images.shape == (64, 1, 32, 32) and images.dtype == torch.float32
    assert factors.shape == (64, 5) and factors.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    val_batches = list(module.val_dataloader())
    assert sum(len(batch[0]) for batch in val_batches) == 50
    first_val = [batch[1] for batch in module.val_dataloader()]
    assert all(torch.equal(a[1], b) for a, b in zip(val_batches, first_val, strict=True))
    assert sum(len(batch[0]) for batch in module.test_dataloader()) == 50
