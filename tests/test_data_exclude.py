"""`data.exclude_classes`: training on normal classes only, with the splits otherwise unchanged."""

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from betavae.data import SpritesDataModule
from betavae.data.base import class_labels, source_indices, without_classes
from betavae.errors import UserError


def _sprites(tmp_path: Path, exclude: list[int]) -> SpritesDataModule:
    module = SpritesDataModule(
        str(tmp_path), num_examples=600, image_size=16, batch_size=50, exclude_classes=exclude
    )
    module.setup()
    return module


def test_excluded_shapes_leave_every_split_and_the_rest_stay_in_their_split(tmp_path):
    everything = _sprites(tmp_path, [])
    without_hearts = _sprites(tmp_path, [2])

    for split in ("train", "val", "test"):
        full, kept = getattr(everything, f"{split}_set"), getattr(without_hearts, f"{split}_set")
        full_labels = class_labels(full)
        assert set(class_labels(kept).tolist()) == {0, 1}
        assert source_indices(kept).tolist() == source_indices(full)[full_labels != 2].tolist()
    batches = list(without_hearts.split_dataloader("test"))
    shapes = torch.cat([factors[:, 0] for _, factors in batches])
    assert len(shapes) == len(without_hearts.test_set)
    assert not (shapes == 2).any()


class _Unlabelled(Dataset):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(1, 2, 2), 0


def test_excluding_classes_of_data_without_labels_is_a_user_error():
    unlabelled = _Unlabelled()
    assert without_classes(unlabelled, []) is unlabelled
    with pytest.raises(UserError, match=r"data.exclude_classes=\[1\]: this data set has no class"):
        without_classes(_Unlabelled(), [1])
