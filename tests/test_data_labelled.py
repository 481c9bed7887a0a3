"""The seeded, class-balanced choice of the few labelled examples, its one-line refusals, and
the labelled batches a semi-supervised run trains on."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from betavae.data import SpritesDataModule
from betavae.data.base import class_labels, source_indices
from betavae.data.labelled import LabelledBatches, labelled_subset
from betavae.errors import UserError


def _labels() -> torch.Tensor:
    """Three classes of unequal sizes (40, 25, 60), shuffled."""
    labels = torch.cat([torch.full((40,), 0), torch.full((25,), 1), torch.full((60,), 2)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]


def test_takes_exactly_n_distinct_examples_of_every_class() -> None:
    labels = _labels()

    chosen = labelled_subset(labels, 7, seed=0)

    assert len(chosen.unique()) == len(chosen) == 21
    assert labels[chosen].bincount().tolist() == [7, 7, 7]
    assert chosen.tolist() == sorted(chosen.tolist())


def test_the_same_seed_gives_the_same_examples_and_other_seeds_others() -> None:
    labels = _labels()

    first, again = labelled_subset(labels, 5, seed=3), labelled_subset(labels, 5, seed=3)
    others = [set(labelled_subset(labels, 5, seed=s).tolist()) for s in range(4, 9)]

    assert torch.equal(first, again)
    assert all(other != set(first.tolist()) for other in others)


def test_more_labels_per_class_keep_the_fewer_ones_of_the_same_seed() -> None:
    labels = _labels()

    few, more = labelled_subset(labels, 3, seed=2), labelled_subset(labels, 10, seed=2)

    assert set(few.tolist()) <= set(more.tolist())


def test_every_example_of_a_class_is_chosen_equally_often_over_seeds() -> None:
    labels = _labels()
    counts = torch.zeros(len(labels))

    for seed in range(2000):
        counts[labelled_subset(labels, 5, seed)] += 1

    # Each of class 1's 25 examples is chosen with probability 5/25: 400 times in 2000 draws,
    # give or take sqrt(2000·0.2·0.8) ≈ 18; class 0's with 5/40 (250), class 2's with 5/60.
    expected = torch.tensor([2000 * 5 / [40, 25, 60][c] for c in labels.tolist()])
    assert (counts - expected).abs().max() < 5 * 18


def test_a_class_with_too_few_examples_is_named_with_the_most_allowed() -> None:
    message = r"^labels_per_class=26: class 1 has only 25 examples to choose from; use at most 25$"
    with pytest.raises(UserError, match=message):
        labelled_subset(_labels(), 26, seed=0)


def test_the_class_with_too_few_examples_is_named_by_its_name_where_it_has_one() -> None:
    message = r"^n=26: class 1 \(dogs\) has only 25 examples to choose from; use at most 25$"
    with pytest.raises(UserError, match=message):
        labelled_subset(_labels(), 26, seed=0, key="n", class_names=["cats", "dogs", "owls"])
    one = torch.tensor([0, 0, 1])
    with pytest.raises(UserError, match=r"^n=2: class 1 \(b\) has only 1 example to choose"):
        labelled_subset(one, 2, seed=0, key="n", class_names=["a", "b"])
    # Where the names are the labels themselves, the label is said once.
    with pytest.raises(UserError, match=r"^n=26: class 1 has only 25 examples"):
        labelled_subset(_labels(), 26, seed=0, key="n", class_names=["0", "1", "2"])


def test_all_of_the_smallest_class_is_allowed() -> None:
    assert len(labelled_subset(_labels(), 25, seed=0)) == 75


@pytest.mark.parametrize("labels_per_class", [0, -2])
def test_fewer_than_one_label_per_class_is_refused(labels_per_class: int) -> None:
    with pytest.raises(UserError, match=rf"^labels_per_class={labels_per_class} is not allowed"):
        labelled_subset(_labels(), labels_per_class, seed=0)


@pytest.mark.parametrize(
    "labels",
    [None, torch.zeros(0, dtype=torch.long), torch.zeros(10, 40, dtype=torch.long)],
    ids=["none", "empty", "attributes"],
)
def test_data_without_class_labels_is_refused(labels: torch.Tensor | None) -> None:
    with pytest.raises(UserError, match=r"^labels_per_class=10: this data set has no class labels"):
        labelled_subset(labels, 10, seed=0)


def _batches(count: int, batch_size: int) -> LabelledBatches:
    """`count` labelled 'images' whose single pixel is their own index."""
    images = torch.arange(count, dtype=torch.float32).view(count, 1, 1, 1)
    return LabelledBatches(images, torch.arange(count) % 3, batch_size, seed=0)


def _ids(batch: tuple[torch.Tensor, torch.Tensor]) -> list[int]:
    return batch[0].flatten().long().tolist()


def test_fewer_labelled_images_than_a_batch_come_whole_at_every_step() -> None:
    batches = _batches(30, 128)

    for step in (0, 1, 57):
        images, labels = batches.batch(step)
        assert _ids((images, labels)) == list(range(30))
        assert labels.tolist() == [i % 3 for i in range(30)]


def test_more_labelled_images_come_a_batch_a_step_each_once_a_pass() -> None:
    batches = _batches(100, 25)

    first_pass = [i for step in range(4) for i in _ids(batches.batch(step))]
    second_pass = [i for step in range(4, 8) for i in _ids(batches.batch(step))]
    straddling = _ids(_batches(100, 30).batch(3))  # 90..119: the end of a pass, a new one

    assert sorted(first_pass) == sorted(second_pass) == list(range(100))
    assert first_pass != second_pass  # each pass in its own order
    assert len(straddling) == 30


def test_a_step_s_labelled_batch_depends_on_the_step_alone() -> None:
    """As a resumed run needs: the batch of step t is the same whoever asks, whenever."""
    batches, again = _batches(100, 25), _batches(100, 25)

    later = _ids(batches.batch(13))
    for step in range(13):
        again.batch(step)

    assert _ids(again.batch(13)) == later


def test_ddp_ranks_take_successive_batches_of_the_one_stream() -> None:
    batches = _batches(100, 10)

    ranks = [_ids(batches.batch(3, rank, world_size=2)) for rank in (0, 1)]

    assert ranks == [_ids(batches.batch(6)), _ids(batches.batch(7))]


def _sprites(data_dir: Path, labels_per_class: int | None) -> SpritesDataModule:
    module = SpritesDataModule(
        str(data_dir), num_examples=600, image_size=32, labels_per_class=labels_per_class
    )
    module.setup("fit")
    return module


def test_the_training_split_is_the_labelled_examples_and_the_unlabelled_rest(data_dir) -> None:
    module = _sprites(data_dir, 4)

    train = source_indices(module.train_set).tolist()
    labelled = source_indices(module.labelled_set).tolist()
    unlabelled = source_indices(module.unlabelled_set).tolist()
    assert sorted(labelled + unlabelled) == sorted(train)
    assert not set(labelled) & set(unlabelled)
    assert class_labels(module.labelled_set).bincount().tolist() == [4, 4, 4]
    # The examples betavae-eval labels_per_class=4 label_seeds=[0,...] picks first.
    chosen = labelled_subset(class_labels(module.train_set), 4, seed=0)
    assert labelled == [train[i] for i in chosen]
    assert module.num_classes == 3
    assert _sprites(data_dir, None).labelled_set is None


def test_semi_supervised_batches_carry_labels_and_a_labelled_batch(data_dir) -> None:
    module = _sprites(data_dir, 4)
    device = torch.device("cpu")
    module.trainer = SimpleNamespace(
        training=True,
        global_step=5,
        global_rank=0,
        world_size=1,
        strategy=SimpleNamespace(root_device=device),
    )
    images, factors = next(iter(module.train_dataloader()))

    batch = module.on_after_batch_transfer((images, factors), 0)
    module.trainer.training = False
    val_batch = module.on_after_batch_transfer((images, factors), 0)

    assert len(batch) == 5 and len(val_batch) == 3
    assert torch.equal(batch[2], factors[:, 0].long())  # a sprite's class is its shape
    labelled_images, labelled_labels = batch[3:]
    assert labelled_images.shape == (12, 1, 32, 32)
    assert labelled_labels.tolist() == class_labels(module.labelled_set).tolist()
    # The training batches are the unlabelled images'.
    assert len(module.train_dataloader()) == -(-len(module.unlabelled_set) // 128)


@pytest.mark.parametrize("max_images", [1000, 50])
def test_the_training_images_mean_per_channel(data_dir, max_images: int) -> None:
    module = _sprites(data_dir, 4)
    images = torch.stack([module.train_set[i][0] for i in range(len(module.train_set))])
    exact = images.mean((0, 2, 3))

    estimate = module.train_channel_means(max_images)

    assert estimate.shape == (1,)
    # Every image of the 480 when they are fewer than max_images, else an even spread of them.
    tolerance = 0 if max_images >= len(images) else 0.2 * exact.item()
    torch.testing.assert_close(estimate, exact, rtol=0, atol=tolerance + 1e-6)
