"""Few-label probes (M1) on μ against the same probes on pixels, with known answers."""

import pytest
import torch

from betavae.data.labelled import labelled_subset
from betavae.errors import UserError
from betavae.evaluation.few_labels import few_label_probe_metrics
from betavae.evaluation.representation import knn_accuracy, linear_probe_accuracy

CLASSES = 4
SEEDS = [0, 1, 2]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _clusters(n: int, labels: torch.Tensor) -> torch.Tensor:
    """(n, 4) codes: class c sits at 4·e_c, with noise of sd 0.3 around it (far apart)."""
    return 4.0 * torch.eye(CLASSES)[labels] + 0.3 * torch.randn(n, CLASSES)


def _split(n: int) -> dict[str, torch.Tensor]:
    """Labels, μ clustered by label, and 1x8x8 images of noise that know nothing of the label."""
    labels = torch.arange(n) % CLASSES
    return {"mu": _clusters(n, labels), "images": torch.rand(n, 1, 8, 8), "labels": labels}


def _metrics(train: dict, test: dict, labels_per_class: int, seeds: list[int] = SEEDS) -> dict:
    return few_label_probe_metrics(
        train["mu"],
        train["images"],
        train["labels"],
        test["mu"],
        test["images"],
        test["labels"],
        labels_per_class,
        seeds,
    )


def test_returns_mean_and_sd_of_each_probe_on_mu_and_on_pixels() -> None:
    metrics = _metrics(_split(200), _split(100), 3)

    probes = [
        f"few_label_{features}_{probe}_accuracy_{stat}"
        for features in ("mu", "pixels")
        for probe in ("linear_probe", "knn")
        for stat in ("mean", "sd")
    ]
    assert sorted(metrics) == sorted(
        ["labels_per_class", "label_seeds", "few_label_mu_dims", *probes]
    )
    assert metrics["labels_per_class"] == 3
    assert metrics["label_seeds"] == SEEDS
    assert metrics["few_label_mu_dims"] == CLASSES


def test_clustered_codes_are_read_from_one_label_per_class_and_noise_pixels_are_not() -> None:
    metrics = _metrics(_split(400), _split(400), 1)

    # One example per class lies in its cluster, so both probes are exact on μ; the k-NN
    # only if its vote shrinks to the one neighbour (five would outvote every class).
    assert metrics["few_label_mu_linear_probe_accuracy_mean"] == 1.0
    assert metrics["few_label_mu_knn_accuracy_mean"] == 1.0
    assert metrics["few_label_mu_linear_probe_accuracy_sd"] == 0.0
    # Pixels of noise: chance, 1/4, give or take sqrt(0.25·0.75/400) ≈ 0.02 per seed.
    assert abs(metrics["few_label_pixels_linear_probe_accuracy_mean"] - 0.25) < 0.1
    assert abs(metrics["few_label_pixels_knn_accuracy_mean"] - 0.25) < 0.1


def test_the_pixel_baseline_wins_where_the_code_holds_no_label() -> None:
    train, test = _split(400), _split(400)
    for split in (train, test):
        split["images"], split["mu"] = split["mu"].view(-1, 1, 2, 2), torch.randn(400, 4)

    metrics = _metrics(train, test, 5)

    assert metrics["few_label_pixels_linear_probe_accuracy_mean"] == 1.0
    assert metrics["few_label_pixels_knn_accuracy_mean"] == 1.0
    assert metrics["few_label_mu_linear_probe_accuracy_mean"] < 0.4
    assert metrics["few_label_mu_knn_accuracy_mean"] < 0.4


def test_mean_and_sd_are_those_of_the_probes_fitted_one_seed_at_a_time() -> None:
    train, test = _split(200), _split(200)
    train["mu"] = torch.randn(200, 4) + train["labels"][:, None] * 0.5  # overlapping classes

    metrics = _metrics(train, test, 4)

    linear, knn = [], []
    for seed in SEEDS:
        chosen = labelled_subset(train["labels"], 4, seed)
        fitted = (train["mu"][chosen], train["labels"][chosen], test["mu"], test["labels"])
        linear.append(linear_probe_accuracy(*fitted, standardized=False))
        knn.append(knn_accuracy(*fitted, k=4, standardized=False))
    for key, values in (("linear_probe", linear), ("knn", knn)):
        per_seed = torch.tensor(values, dtype=torch.float64)
        assert len(set(values)) > 1  # the seeds chose differently, so the sd means something
        assert metrics[f"few_label_mu_{key}_accuracy_mean"] == pytest.approx(per_seed.mean())
        assert metrics[f"few_label_mu_{key}_accuracy_sd"] == pytest.approx(per_seed.std())


def test_more_labels_per_class_than_a_class_has_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"^labels_per_class=51: class 0 has only 50"):
        _metrics(_split(200), _split(100), 51)


def test_an_sd_needs_two_seeds() -> None:
    with pytest.raises(ValueError, match="at least two"):
        _metrics(_split(200), _split(100), 3, seeds=[0])


def test_the_probes_read_the_active_dimensions_of_mu_in_their_own_units() -> None:
    """A collapsed dimension (μ barely moving) that happens to sort the few labelled examples
    is not read, and the pixels are not rescaled by the labelled examples' spread: a pixel
    that is dark in all of them but lit in test images does not swamp the others."""
    train, test = _split(400), _split(400)
    for split in (train, test):
        noise = 0.05 * torch.randn(len(split["labels"]), 1)
        leak = 1e-3 * split["labels"][:, None].float()  # tiny, but sorts the classes
        split["mu"] = torch.cat([noise, leak], 1)  # neither active
        images = 4.0 * torch.eye(CLASSES)[split["labels"]] + 0.3 * torch.randn(400, CLASSES)
        split["images"] = torch.cat([images, torch.zeros(400, 1)], 1).view(-1, 1, 1, 5)
    test["images"][:, 0, 0, 4] = 100.0 * torch.rand(400)  # dark in every training image

    metrics = _metrics(train, test, 3)

    assert metrics["few_label_mu_dims"] == 0
    assert metrics["few_label_mu_linear_probe_accuracy_mean"] < 0.4  # chance: nothing to read
    assert metrics["few_label_pixels_linear_probe_accuracy_mean"] == 1.0
    assert metrics["few_label_pixels_knn_accuracy_mean"] > 0.9
