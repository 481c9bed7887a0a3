"""The capacity and β-TC objectives against closed forms, torch.distributions and brute force."""

import math

import pytest
import torch
from torch.distributions import Normal

from betavae.vae import (
    ELBOTerms,
    beta_tc_loss,
    capacity_at,
    capacity_loss,
    decompose_kl,
    kl_standard_normal,
    log_normal,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _posteriors(batch: int, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, dims), torch.randn(batch, dims) * 0.5 - 0.5


def _sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def test_capacity_rises_linearly_to_its_maximum_and_stays() -> None:
    assert capacity_at(0, 20.0, 1000) == 0.0
    assert capacity_at(250, 20.0, 1000) == pytest.approx(5.0)
    assert capacity_at(1000, 20.0, 1000) == pytest.approx(20.0)
    assert capacity_at(5000, 20.0, 1000) == pytest.approx(20.0)
    assert capacity_at(0, 20.0, 0) == 20.0


def test_capacity_loss_is_recon_plus_gamma_times_the_distance_of_the_mean_kl_from_c() -> None:
    unused = torch.zeros(2, 2)
    terms = ELBOTerms(
        recon=torch.tensor([10.0, 20.0]),
        kl=torch.tensor([[1.0, 2.0], [3.0, 0.0]]),  # batch mean KL: 3
        z=unused,
        mu=unused,
        logvar=unused,
    )

    assert capacity_loss(terms, gamma=100.0, capacity=3.0).item() == pytest.approx(15.0)
    assert capacity_loss(terms, gamma=100.0, capacity=1.0).item() == pytest.approx(215.0)
    assert capacity_loss(terms, gamma=100.0, capacity=5.0).item() == pytest.approx(215.0)


def test_log_normal_matches_torch_distributions() -> None:
    x, mu = torch.randn(6, 3), torch.randn(6, 3)
    logvar = torch.randn(6, 3) * 2

    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(x)

    torch.testing.assert_close(log_normal(x, mu, logvar), expected)


def test_the_three_parts_sum_to_the_one_sample_kl_of_each_example() -> None:
    mu, logvar = _posteriors(16, 5)
    z = _sample(mu, logvar)
    std = torch.exp(0.5 * logvar)
    expected = Normal(mu, std).log_prob(z).sum(1) - Normal(0.0, 1.0).log_prob(z).sum(1)

    parts = decompose_kl(z, mu, logvar, dataset_size=1000)

    torch.testing.assert_close(parts.kl, expected, rtol=1e-5, atol=1e-4)


def test_the_parts_sum_in_expectation_to_the_analytic_kl_they_split() -> None:
    mu, logvar = _posteriors(8, 4)
    draws = 4000

    total = sum(decompose_kl(_sample(mu, logvar), mu, logvar, 1000).kl for _ in range(draws))

    # The one-sample KL of each example has a standard deviation of about 2 nats here, so the
    # mean of 4000 draws is within 0.1 nat of the analytic KL.
    analytic = kl_standard_normal(mu, logvar).sum(1)
    torch.testing.assert_close(total / draws, analytic, rtol=0, atol=0.15)


def test_minibatch_weighted_sampling_matches_the_papers_formula_term_by_term() -> None:
    """Chen et al.'s MWS, evaluated one density at a time with torch.distributions."""
    batch, dims, dataset_size = 3, 2, 50
    mu, logvar = _posteriors(batch, dims)
    z = _sample(mu, logvar)
    posterior = [Normal(mu[j], torch.exp(0.5 * logvar[j])) for j in range(batch)]
    expected_mi, expected_tc, expected_dim_kl = [], [], []
    for i in range(batch):
        joint = sum(posterior[j].log_prob(z[i]).sum().exp() for j in range(batch))
        log_qz = math.log(joint / (dataset_size * batch))
        marginals = [
            sum(posterior[j].log_prob(z[i])[d].exp() for j in range(batch)) for d in range(dims)
        ]
        log_prod = sum(math.log(m / (dataset_size * batch)) for m in marginals)
        log_qz_x = posterior[i].log_prob(z[i]).sum().item()
        log_pz = Normal(0.0, 1.0).log_prob(z[i]).sum().item()
        expected_mi.append(log_qz_x - log_qz)
        expected_tc.append(log_qz - log_prod)
        expected_dim_kl.append(log_prod - log_pz)

    parts = decompose_kl(z, mu, logvar, dataset_size)

    for got, expected in (
        (parts.mutual_information, expected_mi),
        (parts.total_correlation, expected_tc),
        (parts.dimension_wise_kl, expected_dim_kl),
    ):
        torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-5, atol=1e-4)


def test_on_a_whole_tiny_data_set_the_estimator_is_the_exact_decomposition_shifted_by_log_n() -> (
    None
):
    """With the batch being all N examples, q(z) is an exact mixture: brute force it."""
    n, dims = 5, 3
    mu, logvar = _posteriors(n, dims)
    z = _sample(mu, logvar)
    std = torch.exp(0.5 * logvar)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(n)),
        torch.distributions.Independent(Normal(mu, std), 1),
    )
    exact_log_qz = mixture.log_prob(z)
    exact_log_prod = sum(
        torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(torch.ones(n)), Normal(mu[:, d], std[:, d])
        ).log_prob(z[:, d])
        for d in range(dims)
    )
    exact_tc = exact_log_qz - exact_log_prod
    exact_mi = Normal(mu, std).log_prob(z).sum(1) - exact_log_qz

    parts = decompose_kl(z, mu, logvar, dataset_size=n)

    log_n = math.log(n)
    torch.testing.assert_close(parts.total_correlation, exact_tc + (dims - 1) * log_n)
    torch.testing.assert_close(parts.mutual_information, exact_mi + log_n)


def test_beta_tc_loss_with_beta_one_is_recon_plus_the_one_sample_kl() -> None:
    mu, logvar = _posteriors(10, 4)
    z = _sample(mu, logvar)
    recon = torch.rand(10) * 100
    parts = decompose_kl(z, mu, logvar, 500)

    one = beta_tc_loss(recon, parts, beta=1.0)
    six = beta_tc_loss(recon, parts, beta=6.0)

    torch.testing.assert_close(one, (recon + parts.kl).mean())
    torch.testing.assert_close(six - one, 5 * parts.total_correlation.mean())
