"""A folder of the user's own PNGs: labels from subfolders, sizes, channels and messages."""

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from betavae.data import ImageFolderDataModule
from betavae.errors import UserError


def write_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """Six red cats (one a level deeper), four blue dogs, of varied sizes, and a stray text file."""
    root = tmp_path / "pets"
    for i in range(5):
        write_png(root / "cat" / f"{i}.png", (40 + i, 30), (255, 0, 0))
    write_png(root / "cat" / "more" / "deep.png", (20, 50), (255, 0, 0))
    for i in range(4):
        write_png(root / "dog" / f"{i}.png", (32, 32), (0, 0, 255))
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def all_examples(module: ImageFolderDataModule) -> list[tuple[torch.Tensor, int]]:
    return [
        example for part in (module.train_set, module.val_set, module.test_set) for example in part
    ]


def test_subfolders_become_labels_and_images_are_resized(labelled: Path) -> None:
    module = ImageFolderDataModule(str(labelled), image_size=16, num_workers=0, batch_size=4)
    assert module.image_shape == (3, 16, 16)
    module.setup("fit")
    assert (len(module.train_set), len(module.val_set), len(module.test_set)) == (8, 1, 1)
    examples = all_examples(module)
    labels = sorted(label for _, label in examples)
    assert labels == [0] * 6 + [1] * 4  # "cat" sorts before "dog"
    for image, label in examples:
        assert image.shape == (3, 16, 16)
        expected = torch.tensor([1.0, 0.0, 0.0] if label == 0 else [0.0, 0.0, 1.0])
        assert torch.allclose(image.mean(dim=(1, 2)), expected)
    images, targets = next(iter(module.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert targets.dtype == torch.int64


def test_one_channel_is_grayscale(labelled: Path) -> None:
    module = ImageFolderDataModule(str(labelled), image_size=8, channels=1)
    assert module.image_shape == (1, 8, 8)
    module.setup("fit")
    for image, label in all_examples(module):
        assert image.shape == (1, 8, 8)
        # ITU-R 601-2 luma, as PIL converts: red 0.299, blue 0.114.
        expected = 76 / 255 if label == 0 else 29 / 255
        assert image.mean().item() == pytest.approx(expected, abs=1e-6)


def test_images_directly_in_the_folder_are_one_unlabelled_set(tmp_path: Path) -> None:
    for i in range(8):
        write_png(tmp_path / f"{i}.png", (20, 20), (0, 255, 0))
    write_png(tmp_path / "sub" / "nested.png", (20, 20), (0, 255, 0))
    module = ImageFolderDataModule(str(tmp_path), image_size=10, val_fraction=0.2, test_fraction=0)
    module.setup("fit")
    examples = all_examples(module)
    assert (len(module.train_set), len(module.val_set), len(module.test_set)) == (7, 2, 0)
    assert [label for _, label in examples] == [0] * 9
    assert all(image.shape == (3, 10, 10) for image, _ in examples)


def test_splits_are_the_same_for_the_same_seed(labelled: Path) -> None:
    modules = [ImageFolderDataModule(str(labelled), split_seed=s) for s in (1, 1)]
    for module in modules:
        module.setup("fit")
    first, second = modules
    assert first.train_set.indices == second.train_set.indices
    assert first.test_set.indices == second.test_set.indices


def test_missing_folder_names_the_path_and_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match=r"^image folder .*nowhere does not exist; set data\.path="):
        ImageFolderDataModule(str(missing)).setup("fit")


@pytest.mark.parametrize("layout", ["empty", "flat", "classes"])
def test_folder_without_images_names_the_path_and_the_key(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    if layout == "flat":
        (root / "readme.txt").write_text("no pictures here")
    if layout == "classes":
        (root / "empty_class").mkdir()
        (root / "empty_class" / "readme.txt").write_text("no pictures here")
    with pytest.raises(
        UserError,
        match=rf"^no images \(.*\.png.*\) under {re.escape(str(root))}; point data\.path=",
    ):
        ImageFolderDataModule(str(root)).setup("fit")


def test_too_few_images_to_hold_out_splits_is_reported(tmp_path: Path) -> None:
    write_png(tmp_path / "only.png", (8, 8), (0, 0, 0))
    module = ImageFolderDataModule(str(tmp_path), val_fraction=0.5, test_fraction=0.4)
    with pytest.raises(UserError, match=r"^only 1 examples, too few"):
        module.setup("fit")


def test_other_channel_counts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data\.channels=4 is not allowed"):
        ImageFolderDataModule(str(tmp_path), channels=4)
