"""The seeded, class-balanced choice of the few labelled examples, and its one-line refusals."""

import pytest
import torch

from betavae.data.labelled import labelled_subset
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
