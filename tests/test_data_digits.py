"""scikit-learn's digits as a data set: the real images, padded, split and served with labels."""

import pytest
import torch
from hydra.utils import instantiate
from sklearn.datasets import load_digits

from betavae.config.schema import validate
from betavae.data import DigitsDataModule
from betavae.data.base import class_labels, class_names, source_indices
from betavae.data.digits import load_digit_tensors
from betavae.data.labelled import labelled_subset
from betavae.errors import UserError


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    module = DigitsDataModule(image_size=16, batch_size=100)
    module.setup()
    return module


def test_every_digit_is_scikit_learns_image_centred_on_black() -> None:
    original = torch.from_numpy(load_digits().images)

    images, labels = load_digit_tensors(13)

    assert images.shape == (1797, 1, 13, 13) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0, 2:10, 2:10].double(), original)
    assert images.sum() == original.sum()  # nothing but black around the digit
    assert labels.bincount().tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_splits_are_disjoint_complete_and_labelled(digits: DigitsDataModule) -> None:
    splits = [digits.split_set(name) for name in ("train", "val", "test")]
    indices = [set(source_indices(split).tolist()) for split in splits]

    assert [len(split) for split in splits] == [1437, 180, 180]
    assert set.union(*indices) == set(range(1797))
    assert class_names(digits.train_set) == [str(d) for d in range(10)]
    _, labels = load_digit_tensors(8)
    train = digits.train_set
    assert torch.equal(class_labels(train), labels[source_indices(train)])


def test_batches_are_floats_in_the_unit_range_with_their_digit(digits: DigitsDataModule) -> None:
    images, labels = load_digit_tensors(16)
    order = source_indices(digits.test_set)

    batches = list(digits.test_dataloader())

    served = torch.cat([batch[0] for batch in batches])
    assert served.shape == (180, 1, 16, 16) and served.dtype == torch.float32
    torch.testing.assert_close(served, images[order].float() / 16)
    assert torch.equal(torch.cat([batch[1] for batch in batches]), labels[order])


def test_excluded_digits_are_in_no_split() -> None:
    module = DigitsDataModule(exclude_classes=[3, 7])
    module.setup()

    for name in ("train", "val", "test"):
        assert set(class_labels(module.split_set(name)).tolist()) == set(range(10)) - {3, 7}


def test_the_few_labels_come_from_the_training_split(digits: DigitsDataModule) -> None:
    labels = class_labels(digits.train_set)

    assert labels[labelled_subset(labels, 10, seed=0)].bincount().tolist() == [10] * 10
    smallest = int(labels.bincount().min())
    with pytest.raises(UserError, match=rf"has only {smallest} examples"):
        labelled_subset(labels, smallest + 1, seed=0)


def test_the_config_builds_the_module_and_refuses_images_smaller_than_the_digits(
    compose_train,
) -> None:
    module = instantiate(compose_train(["data=digits"]).data)

    assert isinstance(module, DigitsDataModule) and module.image_shape == (1, 16, 16)
    with pytest.raises(UserError, match=r"^data.image_size=7 is not allowed: an integer >= 8$"):
        validate(compose_train(["data=digits", "data.image_size=7"]))
