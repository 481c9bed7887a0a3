"""DIP-VAE's covariance penalty and FactorVAE's discriminator terms against closed forms."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from betavae.vae import (
    ELBOTerms,
    covariance,
    covariance_of_codes,
    dip_penalty,
    discriminator,
    discriminator_loss,
    factor_vae_loss,
    factor_vae_terms,
    permute_dims,
    total_correlation_estimate,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _with_covariance(target: torch.Tensor, batch: int = 50) -> torch.Tensor:
    """A batch (B, D) whose covariance over the batch is exactly `target`."""
    x = torch.randn(batch, target.shape[0], dtype=torch.float64)
    centred = x - x.mean(0)
    whitened = centred @ torch.linalg.inv(torch.linalg.cholesky(centred.T @ centred / batch)).T
    return (whitened @ torch.linalg.cholesky(target).T + 3.0).float()  # any mean


def test_covariance_is_the_batch_covariance_divided_by_the_batch_size() -> None:
    x = torch.randn(20, 4) * torch.tensor([1.0, 2.0, 0.5, 3.0])

    torch.testing.assert_close(covariance(x), torch.cov(x.T, correction=0))


def test_dip_penalty_is_zero_for_an_identity_covariance() -> None:
    mu = _with_covariance(torch.eye(4, dtype=torch.float64))

    torch.testing.assert_close(covariance(mu), torch.eye(4), atol=1e-5, rtol=0)
    assert dip_penalty(covariance(mu), lambda_od=10.0, lambda_d=100.0).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_dip_penalty_weighs_off_diagonal_and_diagonal_apart() -> None:
    rho, a, b = 0.3, 2.0, 0.5
    mu = _with_covariance(torch.tensor([[a, rho], [rho, b]], dtype=torch.float64))

    penalty = dip_penalty(covariance(mu), lambda_od=5.0, lambda_d=7.0)

    # Both off-diagonal entries count: 5·2ρ², and 7·((a − 1)² + (b − 1)²).
    expected = 5.0 * 2 * rho**2 + 7.0 * ((a - 1) ** 2 + (b - 1) ** 2)
    assert penalty.item() == pytest.approx(expected, rel=1e-5)


def test_dip_ii_is_zero_when_mean_variance_and_posterior_variance_add_up_to_one() -> None:
    """Cov[z] = Cov[μ] + E[σ²]: a μ of variance 1 − s and posteriors of variance s."""
    s = torch.tensor([0.2, 0.6, 0.9], dtype=torch.float64)
    mu = _with_covariance(torch.diag(1 - s))
    logvar = s.float().log().expand_as(mu)

    assert dip_penalty(covariance_of_codes(mu, logvar), 1.0, 1.0).item() == pytest.approx(
        0.0, abs=1e-6
    )
    # DIP-VAE-I sees only μ: each variance 1 − s away from 1.
    assert dip_penalty(covariance(mu), 1.0, 1.0).item() == pytest.approx(
        (s**2).sum().item(), rel=1e-5
    )


def test_dip_ii_covariance_is_that_of_samples_of_the_aggregate_posterior() -> None:
    mu = torch.randn(32, 3) @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, -0.3], [0.0, 0.0, 0.7]])
    logvar = torch.randn(32, 3) * 0.5 - 1.0
    draws = 4000  # per example: 128,000 samples of q(z), the mixture of the 32 posteriors

    z = Normal(mu, torch.exp(0.5 * logvar)).sample((draws,)).reshape(-1, 3)

    torch.testing.assert_close(
        covariance_of_codes(mu, logvar), torch.cov(z.T, correction=0), atol=0.02, rtol=0
    )


def test_the_discriminator_is_kim_and_mnihs_mlp() -> None:
    net = discriminator(latent_dim=10)

    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (10, 1000),
        *[(1000, 1000)] * 5,
        (1000, 2),
    ]
    slopes = [m.negative_slope for m in net if isinstance(m, torch.nn.LeakyReLU)]
    assert slopes == [0.2] * 6
    assert net(torch.randn(3, 10)).shape == (3, 2)


def test_permute_dims_keeps_each_marginal_and_breaks_the_dependence() -> None:
    x = torch.randn(10_000)
    z = torch.stack([x, x, -x], dim=1)  # three copies of one variable: fully dependent

    permuted = permute_dims(z)

    for d in range(3):  # each column holds the same values, reordered
        torch.testing.assert_close(permuted[:, d].sort().values, z[:, d].sort().values)
    correlations = torch.corrcoef(permuted.T)
    off_diagonal = correlations[~torch.eye(3, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.05  # 1 and −1 before; ±0.01 is the noise of 10,000
    assert (permuted[:, 0] == permuted[:, 1]).float().mean() < 0.01  # a permutation per column


def test_tc_estimate_is_the_difference_of_the_logits_and_zero_when_they_are_zero() -> None:
    assert total_correlation_estimate(torch.zeros(5, 2)).tolist() == [0.0] * 5
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0]])

    assert total_correlation_estimate(logits).tolist() == [3.0, 0.0, -4.0]


def test_tc_estimate_with_the_true_log_ratio_as_logits_is_the_gaussians_total_correlation() -> None:
    """The density-ratio trick at the optimal discriminator, whose logits are log q(z) and
    log q̄(z) (up to a shared constant): for a Gaussian, TC = −½ log det of its correlations."""
    rho = 0.8
    joint = MultivariateNormal(torch.zeros(2), torch.tensor([[1.0, rho], [rho, 1.0]]))
    marginals = Normal(0.0, 1.0)
    z = joint.sample((200_000,))
    logits = torch.stack([joint.log_prob(z), marginals.log_prob(z).sum(1)], dim=1)

    tc = total_correlation_estimate(logits).mean().item()

    assert tc == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.01)  # 0.511 nats


def test_discriminator_loss_against_hand_computed_cross_entropies() -> None:
    assert discriminator_loss(torch.zeros(4, 2), torch.zeros(4, 2)).item() == pytest.approx(
        math.log(2)
    )
    real = torch.tensor([[2.0, 0.0], [0.0, 0.0]])  # p(real) = 1/(1+e^−2), then ½
    permuted = torch.tensor([[0.0, 1.0]])  # p(permuted) = 1/(1+e^−1)

    expected = 0.5 * ((math.log(1 + math.exp(-2)) + math.log(2)) / 2 + math.log(1 + math.exp(-1)))
    assert discriminator_loss(real, permuted).item() == pytest.approx(expected)


def test_factor_vae_loss_is_the_elbo_plus_gamma_times_the_tc() -> None:
    unused = torch.zeros(2, 2)
    terms = ELBOTerms(
        recon=torch.tensor([10.0, 20.0]),
        kl=torch.tensor([[1.0, 2.0], [3.0, 0.0]]),
        z=unused,
        mu=unused,
        logvar=unused,
    )

    loss = factor_vae_loss(terms, torch.tensor([0.5, 1.5]), gamma=10.0)

    assert loss.item() == pytest.approx(((10 + 3 + 5) + (20 + 3 + 15)) / 2)


def test_one_backward_pass_gives_each_network_the_gradient_of_its_own_loss_alone() -> None:
    encoder, critic = torch.nn.Linear(6, 3), discriminator(3)
    x = torch.randn(16, 6)

    def gradients(loss: torch.Tensor) -> list[torch.Tensor]:
        params = [*encoder.parameters(), *critic.parameters()]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]

    torch.manual_seed(1)
    parts = factor_vae_terms(critic, encoder(x))
    combined = gradients(4.0 * parts.total_correlation.mean() + parts.discriminator_loss)

    # Each loss on its own, the naive way: the encoder's through D, D's on fixed codes.
    z = encoder(x)
    torch.manual_seed(1)
    permuted = permute_dims(z.detach())
    encoder_only = gradients(4.0 * total_correlation_estimate(critic(z)).mean())
    critic_only = gradients(discriminator_loss(critic(z.detach()), critic(permuted)))
    n_encoder = len(list(encoder.parameters()))
    expected = encoder_only[:n_encoder] + critic_only[n_encoder:]

    for got, want in zip(combined, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert all(g.abs().sum() > 0 for g in combined)  # both networks do learn


def test_discriminator_terms_and_covariances_are_float32_under_bf16_autocast() -> None:
    critic, z = discriminator(4), torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = factor_vae_terms(critic, z)
        means = covariance(z.bfloat16())
        codes = covariance_of_codes(z.bfloat16(), z.bfloat16())

    assert parts.total_correlation.dtype == parts.discriminator_loss.dtype == torch.float32
    assert means.dtype == codes.dtype == torch.float32
    # Computed in float32 from the bf16 values, not rounded to bf16's 8 bits on the way.
    torch.testing.assert_close(means, covariance(z.bfloat16().float()), rtol=1e-6, atol=1e-6)
