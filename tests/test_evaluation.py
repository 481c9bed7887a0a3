"""Evaluation measures on hand-built encoders and decoders, where the right answer is known."""

import pytest
import torch
from torch import nn

from betavae.data.sprites import render_sprites
from betavae.evaluation.anomaly import anomaly_scores, quantile_threshold, separation
from betavae.evaluation.collect import SplitResults
from betavae.evaluation.disentanglement import (
    dimension_factors,
    discretize_factors,
    most_informative_factors,
    mutual_information_gap,
    normalized_mutual_information,
)
from betavae.evaluation.metrics import mig_metrics
from betavae.evaluation.pictures import interpolation, traversal, traversal_labels
from betavae.evaluation.representation import active_units, knn_accuracy, linear_probe_accuracy
from betavae.vae import build_vae, elbo_terms


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine lose much to them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Mask(nn.Module):
    """Zeroes chosen latent dimensions, so the decoder after it cannot use them."""

    def __init__(self, keep: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("keep", keep)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.keep


def test_dimensions_the_decoder_ignores_become_inactive_units(one_thread):
    # Binary 4x4 images driven by two latent causes; the decoder only sees dims 0 and 1.
    causes = torch.randn(512, 2)
    images = (causes @ torch.randn(2, 16) > 0).float().view(512, 1, 4, 4)
    vae = build_vae((1, 4, 4), 4, "mlp", [32], [], "bernoulli")
    vae.decoder = nn.Sequential(_Mask(torch.tensor([1.0, 1.0, 0.0, 0.0])), vae.decoder)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        elbo_terms(vae, images).elbo.backward()
        optimizer.step()

    with torch.no_grad():
        mu, _ = vae.encode(images)

    assert active_units(mu).tolist() == [True, True, False, False]


def _sprite_factors(n: int = 3000) -> torch.Tensor:
    _, factors = render_sprites(n, image_size=8, seed=0)
    return factors


def test_mig_is_high_for_an_encoder_that_copies_the_factors_and_low_for_a_random_one():
    factors = _sprite_factors()
    ids = discretize_factors(factors)
    copying = factors + 0.001 * torch.randn_like(factors)
    mixing = factors @ torch.randn(5, 5)  # every latent mixes every factor

    copied_mig, copied_gaps = mutual_information_gap(copying, ids)
    random_mig, _ = mutual_information_gap(mixing, ids)

    assert ids.max(0).values.tolist() == [2, 5, 39, 31, 31]  # the grids' sizes, less one
    assert copied_mig > 0.6
    assert all(gap is not None and gap > 0.5 for gap in copied_gaps)
    assert random_mig < 0.2
    assert copied_mig > random_mig + 0.4


def test_a_factor_that_never_varies_has_no_gap_and_is_left_out():
    factors = _sprite_factors()
    factors[:, 0] = 1.0  # one shape only
    ids = discretize_factors(factors)

    mig, gaps = mutual_information_gap(factors.clone(), ids)

    assert gaps[0] is None
    assert mig == pytest.approx(sum(gaps[1:]) / 4)


def test_each_latent_is_matched_with_the_factor_it_copies_a_constant_one_with_nothing():
    factors = _sprite_factors()
    ids = discretize_factors(factors)
    # Latents: pos_y, scale, a dead dimension (constant), shape.
    mu = torch.stack([factors[:, 4], factors[:, 1], torch.zeros(len(factors)), factors[:, 0]], 1)

    matched = most_informative_factors(mu, ids)

    assert [k for k, _ in matched[:2]] + [matched[3][0]] == [4, 1, 0]
    # 20 bins hold at most log 20 of pos_y's log 32 nats: 0.86.
    assert [round(information, 2) for _, information in matched] == [0.85, 1.0, 0.0, 1.0]
    torch.testing.assert_close(
        normalized_mutual_information(mu, ids)[3, 0], torch.tensor(1.0, dtype=torch.float64)
    )


def test_probes_read_a_linearly_coded_label_and_not_a_random_one():
    mu = torch.randn(1200, 3)
    labels = (mu[:, 0] > 0).long() + 2 * (mu[:, 2] > 0).long()  # four classes
    noise_labels = torch.randint(0, 4, (1200,))
    train, test = slice(0, 1000), slice(1000, None)

    assert linear_probe_accuracy(mu[train], labels[train], mu[test], labels[test]) > 0.95
    assert knn_accuracy(mu[train], labels[train], mu[test], labels[test]) > 0.8
    chance = knn_accuracy(mu[train], noise_labels[train], mu[test], noise_labels[test])
    assert chance < 0.4


def test_separation_of_scores_in_nats_uses_their_order():
    normal = 100 + torch.rand(300) * 50
    anomalies = 160 + torch.rand(100) * 50
    scores = torch.cat([normal, anomalies])
    is_anomaly = torch.cat([torch.zeros(300), torch.ones(100)]).bool()

    found = separation(scores, is_anomaly)

    assert found.auroc == pytest.approx(1.0)
    assert found.auprc == pytest.approx(1.0)
    assert separation(-scores, is_anomaly).auroc == pytest.approx(0.0)
    assert separation(scores, torch.zeros(400, dtype=torch.bool)) is None


def _encodings(mu: torch.Tensor, logvar: torch.Tensor) -> SplitResults:
    count = len(mu)
    return SplitResults(
        mu, logvar, torch.zeros(count), torch.zeros(count), torch.zeros_like(mu), None
    )


def test_knn_scores_posteriors_unlike_the_reference_ones_higher():
    reference = _encodings(torch.randn(2000, 3), torch.randn(2000, 3) * 0.1 - 2)
    normal = _encodings(torch.randn(300, 3), torch.randn(300, 3) * 0.1 - 2)
    far_mu = _encodings(
        torch.randn(100, 3) + torch.tensor([6.0, 0, 0]), torch.randn(100, 3) * 0.1 - 2
    )
    # Means like the normal ones, but the encoder is unusually unsure: log σ² counts too.
    wide = _encodings(torch.randn(100, 3), torch.randn(100, 3) * 0.1 - 1)
    is_anomaly = torch.cat([torch.zeros(300), torch.ones(100)]).bool()

    for odd in (far_mu, wide):
        scores = torch.cat([anomaly_scores(results, "knn", reference) for results in (normal, odd)])
        assert separation(scores, is_anomaly).auroc > 0.99


def test_knn_distances_are_in_units_of_the_references_spread():
    mu, logvar = torch.randn(500, 2), torch.randn(500, 2)
    results = _encodings(torch.randn(50, 2), torch.randn(50, 2))
    stretch = torch.tensor([1000.0, 1.0])

    scores = anomaly_scores(results, "knn", _encodings(mu, logvar), neighbours=3)
    stretched = anomaly_scores(
        _encodings(results.mu * stretch, results.logvar),
        "knn",
        _encodings(mu * stretch, logvar),
        neighbours=3,
    )

    torch.testing.assert_close(stretched, scores, rtol=1e-4, atol=1e-4)
    copies = _encodings(mu[:10], logvar[:10])
    assert anomaly_scores(copies, "knn", _encodings(mu, logvar), neighbours=1).abs().max() < 1e-3
    with pytest.raises(ValueError, match="needs the normal reference"):
        anomaly_scores(results, "knn")


def test_a_quantile_threshold_flags_that_share_of_normal_examples():
    normal = torch.arange(1000.0)

    threshold = quantile_threshold(normal, 0.95)

    assert (normal > threshold).sum() == 50


def _pixel_per_dimension_vae() -> nn.Module:
    """A decoder whose latent dimension d drives pixel d alone: pixel = z_d + 0.5."""
    vae = build_vae((1, 2, 2), 4, "mlp", [], [], "gaussian")
    with torch.no_grad():
        vae.decoder[0].weight.copy_(torch.eye(4))
        vae.decoder[0].bias.fill_(0.5)
    return vae


def test_a_traversal_row_moves_only_its_own_dimension_in_the_given_order():
    vae = _pixel_per_dimension_vae()
    mu = torch.zeros(4)
    order = torch.tensor([2, 0, 3, 1])

    rows = traversal(vae, mu, order, span=0.4, steps=5).view(4, 5, 4)

    for row, dim in enumerate(order.tolist()):
        torch.testing.assert_close(rows[row, :, dim], torch.linspace(0.1, 0.9, 5))
        others = [d for d in range(4) if d != dim]
        assert (rows[row][:, others] == 0.5).all()


def test_an_interpolation_runs_from_one_latent_to_the_other():
    vae = _pixel_per_dimension_vae()
    start, end = torch.tensor([[-0.4, 0.2, 0.4, 0.1]]), torch.tensor([[0.4, 0.2, 0.0, -0.3]])

    line = interpolation(vae, start, end, steps=3).view(3, 4) - 0.5

    torch.testing.assert_close(line[0], start[0])
    torch.testing.assert_close(line[1], (start[0] + end[0]) / 2)
    torch.testing.assert_close(line[2], end[0])


def test_traversal_rows_name_the_factor_each_dimension_follows():
    generator = torch.Generator().manual_seed(0)
    factors = torch.stack(
        [
            torch.randint(3, (2000,), generator=generator),
            torch.randint(32, (2000,), generator=generator),
        ],
        dim=1,
    ).float()
    # z0 follows the second factor, z1 is noise, z2 follows the first one.
    mu = torch.stack([factors[:, 1], torch.randn(2000, generator=generator), factors[:, 0]], dim=1)

    found = dimension_factors(mu, factors, ("shape", "pos_x"))
    labels = traversal_labels(torch.tensor([2, 0, 1]), torch.tensor([3.0, 0.01, 1.5]), found)

    assert found == ["pos_x", None, "shape"]
    assert labels == ["z2  KL 1.50  shape", "z0  KL 3.00  pos_x", "z1  KL 0.01"]


def test_mig_is_left_out_with_its_reason_where_the_examples_cannot_measure_it():
    factors = torch.rand(39, 2)
    mu = torch.randn(39, 3)

    assert mig_metrics(mu, factors, ("a", "b")) == {
        "mig_left_out": "39 examples; MIG needs at least 40"
    }
    constant = torch.zeros(400, 2)
    assert mig_metrics(torch.randn(400, 3), constant, ("a", "b")) == {
        "mig_left_out": "no factor varies in these examples"
    }
    measured = mig_metrics(torch.randn(400, 3), torch.rand(400, 2).round(), ("a", "b"))
    assert 0 <= measured["mig"] <= 1
