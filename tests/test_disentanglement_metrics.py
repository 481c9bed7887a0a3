"""The disentanglement metrics on codes whose answer is known: the factors themselves, a
permutation of them, noise, and one dimension that carries two factors.

Sample sizes are a tenth of disentanglement_lib's, so each number carries sampling noise; every
tolerance below says how much. With n held-out points an accuracy p has a standard error of
sqrt(p(1 − p) / n): 0.015 at p = 1/3 and n = 1000, so ± 0.05 is more than three of them.
"""

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from betavae.data.sprites import FACTOR_VALUES, SpritesGroundTruth, render_factors
from betavae.errors import UserError
from betavae.evaluation.dci import dci, dci_completeness, dci_disentanglement
from betavae.evaluation.disentanglement import mutual_information_gap
from betavae.evaluation.disentanglement_names import SAMPLES, SampleCounts
from betavae.evaluation.disentanglement_scores import (
    DISENTANGLEMENT_SCORES,
    disentanglement_scores,
)
from betavae.evaluation.ground_truth import encoder_mean, sample_codes
from betavae.evaluation.intervention_scores import beta_vae_score, factor_vae_score
from betavae.evaluation.modularity import explicitness, modularity
from betavae.evaluation.sap import sap_score
from betavae.vae import build_vae

SIZES = (4, 5, 6)
FEW = {"num_train": 1000, "num_eval": 1000}


class ObservedFactors:
    """Ground truth whose observations are the factor indices themselves, so that any function
    of the true factors can be the representation."""

    def __init__(self, factor_sizes: tuple[int, ...]) -> None:
        self.factor_sizes = factor_sizes
        self.factor_names = tuple(f"factor_{k}" for k in range(len(factor_sizes)))

    def observations(self, factor_indices: Tensor) -> Tensor:
        return factor_indices.double()


def identity(x: Tensor) -> Tensor:
    return x


def permuted(x: Tensor) -> Tensor:
    return x[:, [2, 0, 1]]


def two_in_one(x: Tensor) -> Tensor:
    """Factors 0 and 1 in one dimension, without loss (4 × 5 = 20 values, one per histogram bin);
    factor 2 in the other."""
    return torch.stack([x[:, 0] * SIZES[1] + x[:, 1], x[:, 2]], dim=1)


def noise(width: int = 3):
    """A representation that ignores its input."""
    generator = torch.Generator().manual_seed(1)
    return lambda x: torch.randn(len(x), width, generator=generator, dtype=torch.float64)


def codes(representation, sizes=SIZES) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """(train, test) (codes, factors): 2000 and 1000 random examples."""
    data, generator = ObservedFactors(sizes), torch.Generator().manual_seed(0)
    return sample_codes(data, representation, 2000, generator), sample_codes(
        data, representation, 1000, generator
    )


def all_code_scores(representation) -> dict[str, float]:
    train, test = codes(representation)
    return {
        "mig": mutual_information_gap(*train)[0],
        **dci(*train, *test),
        "modularity": modularity(*train),
        "explicitness": explicitness(*train, *test),
    }


def intervention_scores(representation, data=None) -> tuple[float, float]:
    data = data or ObservedFactors(SIZES)
    beta = beta_vae_score(data, representation, torch.Generator().manual_seed(0), **FEW)
    factor = factor_vae_score(
        data, representation, torch.Generator().manual_seed(0), num_variance_estimate=1000, **FEW
    )
    return beta, factor


@pytest.fixture(scope="module")
def perfect() -> dict[str, float]:
    return all_code_scores(identity)


def test_the_factors_themselves_score_near_perfectly(perfect: dict[str, float]) -> None:
    # MIG's second-best dimension is independent of the factor, but the histogram estimate of
    # their mutual information is biased up by (a − 1)(b − 1) / 2N nats: at most 5·5 / 4000, so
    # the gap falls short of 1 by 0.005 of the smallest entropy (log 4) at most.
    assert perfect["mig"] == pytest.approx(1, abs=0.01)
    # The trees only need each factor's own dimension, and predict it without error.
    assert perfect["disentanglement"] == pytest.approx(1, abs=0.01)
    assert perfect["completeness"] == pytest.approx(1, abs=0.01)
    assert perfect["informativeness_test"] == 1.0
    # Each dimension's information about the other factors is that same bias, squared: ~1e-5.
    assert perfect["modularity"] == pytest.approx(1, abs=0.01)
    # A factor's probability under multinomial regression peaks at its own value: ranks are exact.
    assert perfect["explicitness"] == pytest.approx(1, abs=0.01)
    # The dimension of the fixed factor differs by exactly 0 within pairs and has 0 variance
    # within a batch: both classifiers see it on every held-out point.
    assert intervention_scores(identity) == (pytest.approx(1, abs=0.005), 1.0)


def test_a_permutation_of_the_factors_scores_the_same(perfect: dict[str, float]) -> None:
    permuted_scores = all_code_scores(permuted)

    for name, value in perfect.items():
        assert permuted_scores[name] == pytest.approx(value, abs=0.01), name
    assert intervention_scores(permuted) == intervention_scores(identity)


def test_noise_scores_chance() -> None:
    scores = all_code_scores(noise())

    assert scores["mig"] == pytest.approx(0, abs=0.02)
    # Importances spread over all factors alike: every dimension's entropy is close to log K.
    assert scores["disentanglement"] == pytest.approx(0, abs=0.05)
    assert scores["completeness"] == pytest.approx(0, abs=0.05)
    # Trees guessing from noise are right once in V; 1000 points per factor, three factors.
    chance = np.mean([1 / size for size in SIZES])
    assert scores["informativeness_test"] == pytest.approx(chance, abs=0.03)
    # ROC AUC of a guess: 0.5, each value's area with an error of about 0.02 over ~500 pairs.
    assert scores["explicitness"] == pytest.approx(0.5, abs=0.03)
    beta, factor = intervention_scores(noise())
    assert beta == pytest.approx(1 / 3, abs=0.05)
    assert factor == pytest.approx(1 / 3, abs=0.05)


def test_modularity_of_noise_follows_the_bias_of_the_mutual_information() -> None:
    # Noise shares no information with any factor, but its estimate is biased up in proportion
    # to the factor's number of values less one: against 2 and 40 values, 1 : 39, so each noise
    # dimension looks almost wholly "about" the second factor.
    equal = modularity(*codes(noise(), sizes=(5, 5, 5))[0])
    unequal = modularity(*codes(noise(), sizes=(2, 40))[0])

    assert 0.1 < equal < 0.5
    assert unequal > 0.95


def test_one_dimension_for_two_factors_is_caught_by_modularity_dci_and_factor_vae() -> None:
    scores = all_code_scores(two_in_one)
    beta, factor = intervention_scores(two_in_one)

    # Dimension 0 holds all of factors 0 and 1: its squared informations are H₀² and H₁², one
    # over the other and over K − 1 = 2 is its spread; dimension 1 holds factor 2 alone.
    first = 1 - math.log(4) ** 2 / (2 * math.log(5) ** 2)
    assert scores["modularity"] == pytest.approx((first + 1) / 2, abs=0.01)
    # The trees of factors 0 and 1 both rely on dimension 0 alone: its importance row is (1, 1, 0),
    # worth 1 − log 2 / log 3, and it holds two thirds of all importance.
    shared = 1 - math.log(2) / math.log(3)
    assert scores["disentanglement"] == pytest.approx(2 / 3 * shared + 1 / 3, abs=0.02)
    assert scores["completeness"] == pytest.approx(1, abs=0.01)
    # Fixing factor 0 or factor 1 both shrink dimension 0; the vote gives it to one of them, so
    # the other's third of the held-out points is always wrong.
    assert factor == pytest.approx(2 / 3, abs=0.05)
    # MIG and the BetaVAE score do not see it: each factor still lives in a single dimension
    # (MIG asks that, not whether a dimension holds a single factor), and fixing factor 0, 1 or 2
    # changes the pair differences in three distinguishable ways.
    assert scores["mig"] == pytest.approx(1, abs=0.01)
    assert beta == pytest.approx(1, abs=0.005)


def test_sap_is_the_gap_between_a_factor_s_own_dimension_and_chance() -> None:
    def sap(representation, sizes=SIZES) -> float:
        train, test = codes(representation, sizes)
        return sap_score(*train, *test)

    # With two values per factor its own dimension predicts it without error and any other one
    # at chance, 0.5 ± 0.016 on 1000 points (the larger of two such draws a little above 0.5).
    assert sap(identity, sizes=(2, 2, 2)) == pytest.approx(0.5, abs=0.04)
    # A single dimension read linearly separates only the extreme values of a factor with many:
    # even the factors themselves stay far from 1.
    assert 0.3 < sap(identity) < 0.6
    assert sap(noise()) == pytest.approx(0, abs=0.03)


def test_dci_from_importance_matrices_of_known_shape() -> None:
    diagonal = np.eye(4)
    two_factors_per_code = np.hstack([diagonal, diagonal])  # 4 codes, 8 factors

    assert dci_disentanglement(diagonal) == pytest.approx(1)
    assert dci_completeness(diagonal) == pytest.approx(1)
    assert dci_disentanglement(two_factors_per_code) == pytest.approx(1 - math.log(2) / math.log(8))
    assert dci_completeness(two_factors_per_code) == pytest.approx(1)
    # Unused codes weigh nothing; nothing used at all is no disentanglement.
    assert dci_disentanglement(np.vstack([diagonal, np.zeros((2, 4))])) == pytest.approx(1)
    assert dci_disentanglement(np.zeros((3, 3))) == pytest.approx(0)


def test_factor_vae_score_of_a_collapsed_code_is_zero() -> None:
    constant = lambda x: torch.zeros(len(x), 3)  # noqa: E731

    assert intervention_scores(constant)[1] == 0.0


# The BetaVAE score's classifier is disentanglement_lib's: scikit-learn's logistic regression with
# its defaults, on unscaled features; on the sprites' factors (up to 40 values) its 100 iterations
# do not converge, yet it names every held-out factor.
@pytest.mark.filterwarnings("ignore:lbfgs failed to converge")
def test_on_sprites_the_true_factors_score_near_perfectly() -> None:
    class SpriteFactors(ObservedFactors):
        factor_names = SpritesGroundTruth.factor_names

    beta, factor = intervention_scores(identity, SpriteFactors(SpritesGroundTruth.factor_sizes))

    assert SpritesGroundTruth.factor_sizes == (3, 6, 40, 32, 32)
    assert beta == pytest.approx(1, abs=0.005)
    assert factor == 1.0


def centroids(images: Tensor) -> Tensor:
    """(N, 2): the mean column and row of each image's lit pixels."""
    pixels = images[:, 0]
    coords = torch.arange(pixels.shape[-1], dtype=pixels.dtype)
    area = pixels.sum(dim=(1, 2))
    x = (pixels.sum(dim=1) * coords).sum(dim=1)
    y = (pixels.sum(dim=2) * coords).sum(dim=1)
    return torch.stack([x, y], dim=1) / area[:, None]


def test_on_rendered_sprites_a_position_code_names_the_positions_only() -> None:
    data = SpritesGroundTruth(image_size=16)
    indices = torch.tensor([[2, 5, 10, 0, 31]])
    values = torch.stack([grid[i] for grid, i in zip(FACTOR_VALUES, indices[0], strict=True)])
    assert torch.equal(data.observations(indices), render_factors(values[None], 16).float())

    beta, factor = intervention_scores(centroids, data)

    # The centroid shows x and y, nothing of shape, scale or orientation. FactorVAE: the two
    # position factors (2 in 5 held-out points) are named; the others vote at random and always
    # lose. BetaVAE: the positions are named, the other three are told apart by chance (1 in 3):
    # 0.4 + 0.6 / 3. Both ± 0.05 on 1000 points.
    assert factor == pytest.approx(0.4, abs=0.05)
    assert beta == pytest.approx(0.6, abs=0.05)


def test_all_scores_by_name_each_from_its_own_seed() -> None:
    data = ObservedFactors(SIZES)
    alone = disentanglement_scores(data, identity, names=["factor_vae_score"])
    together = disentanglement_scores(data, identity, names=["mig", "factor_vae_score"])

    assert list(together) == ["factor_vae_score", "mig"]  # the order of DISENTANGLEMENT_SCORES
    assert together["factor_vae_score"] == alone["factor_vae_score"] == 1.0
    assert together["mig"] == pytest.approx(1, abs=0.01)
    assert set(DISENTANGLEMENT_SCORES) == {
        "beta_vae_score",
        "factor_vae_score",
        "mig",
        "sap",
        "dci_disentanglement",
        "dci_completeness",
        "dci_informativeness_test",
        "modularity",
        "explicitness_test",
    }
    with pytest.raises(UserError, match=r"^migg: no such disentanglement score; choose from beta"):
        disentanglement_scores(data, identity, names=["migg"])


@pytest.mark.parametrize(
    ("names", "observations"),
    [
        # One draw of random examples, for fitting and for scoring, shared by these metrics.
        (["mig", "sap", "modularity", "explicitness_test"], 300 + 200),
        # Pairs of batches of 64 per point, for fitting and for scoring.
        (["beta_vae_score"], (300 + 200) * 64 * 2),
        # Each dimension's variance, then a batch of 64 per point.
        (["factor_vae_score"], 300 + (300 + 200) * 64),
    ],
)
def test_the_metrics_draw_the_counts_they_are_given(names, observations) -> None:
    data = ObservedFactors(SIZES)
    seen = []

    def counting(x: Tensor) -> Tensor:
        seen.append(len(x))
        return x

    disentanglement_scores(data, counting, names, samples=SampleCounts(num_train=300, num_test=200))

    assert sum(seen) == observations
    # disentanglement_lib's gin defaults, one option away from the quick default.
    assert SAMPLES["paper"] == SampleCounts(num_train=10_000, num_test=5_000)


def test_a_vae_s_representation_is_its_encoder_mean() -> None:
    vae = build_vae((1, 8, 8), 3, "mlp", [16], [], "bernoulli").train()
    images = torch.rand(5, 1, 8, 8)

    mu = encoder_mean(vae)(images)

    assert not vae.training
    torch.testing.assert_close(mu, vae.encode(images)[0].detach())
