"""The importance-weighted bound on a linear Gaussian VAE, where log p(x) has a closed form.

With a linear decoder x = Wz + b + σ·noise and z ~ N(0, I), p(x) = N(b, WWᵀ + σ²I); with
orthogonal columns in W the true posterior is a diagonal Gaussian that the encoder can express.
"""

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from betavae.vae import build_vae, importance_weighted_log_likelihood, kl_standard_normal

SIGMA = 0.5
W = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
B = torch.tensor([0.1, -0.2, 0.3, 0.0])


def _linear_vae(exact_posterior: bool) -> nn.Module:
    vae = build_vae((1, 2, 2), 2, "mlp", [], [], "gaussian", gaussian_std=SIGMA)
    decoder, encoder = vae.decoder[0], vae.encoder[1]
    with torch.no_grad():
        decoder.weight.copy_(W)
        decoder.bias.copy_(B)
        precision = 1 + (W**2).sum(0) / SIGMA**2  # diagonal, since WᵀW is
        gain = W.T / SIGMA**2 / precision[:, None]
        if not exact_posterior:
            gain = gain * 0.6  # a posterior mean shrunk too far, and a variance too wide
            precision = precision / 3
        encoder.weight.zero_()
        encoder.weight[:2] = gain
        encoder.bias[:2] = -gain @ B
        encoder.bias[2:] = -precision.log()
    return vae


def _log_marginal(x: torch.Tensor) -> torch.Tensor:
    covariance = W @ W.T + SIGMA**2 * torch.eye(4)
    return MultivariateNormal(B, covariance).log_prob(x.flatten(1))


def _analytic_elbo(vae: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """E_q[log p(x|z)] - KL in closed form: the decoder is linear, so the expectation is exact."""
    mu, logvar = vae.encode(x)
    mean_fit = vae.likelihood.log_prob(vae.decode(mu), x)
    spread = (W.pow(2).sum(0) * logvar.exp()).sum(1) / (2 * SIGMA**2)
    return mean_fit - spread - kl_standard_normal(mu, logvar).sum(1)


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(0)
    z = torch.randn(32, 2)
    return (z @ W.T + B + SIGMA * torch.randn(32, 4)).view(32, 1, 2, 2)


def test_with_the_exact_posterior_every_k_gives_log_p_x(x):
    vae = _linear_vae(exact_posterior=True)

    for k in (1, 7, 50):
        estimate = importance_weighted_log_likelihood(vae, x, k)
        torch.testing.assert_close(estimate, _log_marginal(x), rtol=0, atol=1e-4)


@torch.no_grad()
def test_the_bound_is_the_elbo_at_k_1_and_tightens_towards_log_p_x_with_k(x):
    vae = _linear_vae(exact_posterior=False)
    elbo = _analytic_elbo(vae, x).mean().item()
    log_px = _log_marginal(x).mean().item()

    def mean_estimate(k: int, repeats: int) -> float:
        many = x.repeat(repeats, 1, 1, 1)
        return importance_weighted_log_likelihood(vae, many, k, 100_000).mean().item()

    # Standard errors of these means: about 0.02 (k = 1) and 0.01 (k = 10, 500).
    at_1, at_10, at_500 = mean_estimate(1, 2000), mean_estimate(10, 200), mean_estimate(500, 200)

    assert elbo < log_px - 1  # the wrong posterior leaves a real gap to close
    assert at_1 == pytest.approx(elbo, abs=0.06)
    assert elbo < at_10 < at_500 <= log_px + 0.03
    assert at_500 == pytest.approx(log_px, abs=0.1)


def test_chunking_does_not_change_the_estimate(x):
    vae = _linear_vae(exact_posterior=False)

    torch.manual_seed(1)
    whole = importance_weighted_log_likelihood(vae, x, 20, latents_per_chunk=10_000)
    torch.manual_seed(1)
    chunked = importance_weighted_log_likelihood(vae, x, 20, latents_per_chunk=32 * 3)

    # The same draws in the same order (3 per chunk): only the grouping of the work differs.
    assert chunked.shape == (32,)
    torch.testing.assert_close(chunked, whole)
