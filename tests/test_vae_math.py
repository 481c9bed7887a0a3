"""The VAE's maths against closed forms and torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from betavae.vae import (
    LOGVAR_MAX,
    LOGVAR_MIN,
    VAE,
    BernoulliLikelihood,
    ELBOTerms,
    GaussianLikelihood,
    build_vae,
    elbo_terms,
    kl_standard_normal,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_kl_matches_torch_distributions() -> None:
    mu = torch.randn(16, 8, dtype=torch.float64) * 3
    logvar = torch.randn(16, 8, dtype=torch.float64) * 4
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))

    kl = kl_standard_normal(mu, logvar)

    assert kl.dtype == torch.float32
    assert kl.shape == (16, 8)
    torch.testing.assert_close(kl.double(), expected, rtol=1e-6, atol=1e-5)


def test_kl_is_zero_exactly_at_the_prior() -> None:
    assert kl_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def test_bernoulli_log_prob_matches_torch_distributions_on_binary_images() -> None:
    logits = torch.randn(4, 1, 5, 6) * 4
    x = torch.randint(0, 2, (4, 1, 5, 6)).float()
    expected = Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))

    torch.testing.assert_close(BernoulliLikelihood().log_prob(logits, x), expected)


def test_bernoulli_log_prob_is_minus_bce_on_grey_levels() -> None:
    logits = torch.randn(4, 3, 5, 6, dtype=torch.float64)
    x = torch.rand(4, 3, 5, 6, dtype=torch.float64)
    p = torch.sigmoid(logits)
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3))

    log_prob = BernoulliLikelihood().log_prob(logits, x)

    assert log_prob.dtype == torch.float32
    torch.testing.assert_close(log_prob.double(), expected, rtol=1e-5, atol=1e-4)


def test_bernoulli_mean_is_the_pixel_probability() -> None:
    logits = torch.tensor([-2.0, 0.0, 3.0]).view(1, 1, 1, 3)
    torch.testing.assert_close(BernoulliLikelihood().mean(logits), torch.sigmoid(logits))


@pytest.mark.parametrize("likelihood", [BernoulliLikelihood(), GaussianLikelihood(channels=1)])
def test_params_of_a_mean_have_that_mean(likelihood: torch.nn.Module) -> None:
    mean = torch.tensor([0.01, 0.2, 0.5, 0.9, 0.99])
    torch.testing.assert_close(likelihood.mean(likelihood.params_of_mean(mean)), mean)


def test_bernoulli_params_of_a_mean_of_zero_or_one_are_finite() -> None:
    logits = BernoulliLikelihood().params_of_mean(torch.tensor([0.0, 1.0]))
    assert logits.isfinite().all() and logits[0] < -6 and logits[1] > 6


def test_gaussian_log_prob_with_fixed_std_matches_torch_distributions() -> None:
    likelihood = GaussianLikelihood(channels=3, std=0.2)
    mean, x = torch.rand(4, 3, 5, 6), torch.rand(4, 3, 5, 6)
    expected = Normal(mean, 0.2).log_prob(x).sum((1, 2, 3))

    torch.testing.assert_close(likelihood.log_prob(mean, x), expected)
    assert list(likelihood.parameters()) == []


def test_gaussian_log_prob_with_learned_std_matches_and_trains_the_std() -> None:
    likelihood = GaussianLikelihood(channels=2, std=0.1, learn_std=True)
    torch.testing.assert_close(likelihood.log_std.detach(), torch.full((2,), math.log(0.1)))
    with torch.no_grad():
        likelihood.log_std.copy_(torch.tensor([math.log(0.1), math.log(0.5)]))
    mean, x = torch.rand(4, 2, 5, 6), torch.rand(4, 2, 5, 6)
    std = torch.tensor([0.1, 0.5]).view(1, 2, 1, 1)
    expected = Normal(mean, std).log_prob(x).sum((1, 2, 3))

    log_prob = likelihood.log_prob(mean, x)
    log_prob.sum().backward()

    torch.testing.assert_close(log_prob, expected)
    assert likelihood.log_std.grad is not None
    assert likelihood.log_std.grad.abs().min() > 0


def test_gaussian_mean_clamps_to_the_image_range() -> None:
    params = torch.tensor([-0.5, 0.3, 1.7]).view(1, 1, 1, 3)
    expected = torch.tensor([0.0, 0.3, 1.0]).view(1, 1, 1, 3)
    torch.testing.assert_close(GaussianLikelihood(channels=1).mean(params), expected)


def test_gaussian_rejects_non_positive_std() -> None:
    with pytest.raises(ValueError, match="std must be positive"):
        GaussianLikelihood(channels=1, std=0.0)


def _tiny_vae() -> VAE:
    return build_vae((1, 6, 6), 4, "mlp", [16], [], "bernoulli")


def test_reparameterize_passes_gradients_to_mu_and_logvar() -> None:
    vae = _tiny_vae()
    mu = torch.randn(8, 4, requires_grad=True)
    logvar = torch.randn(8, 4, requires_grad=True)

    vae.reparameterize(mu, logvar).pow(2).sum().backward()

    assert mu.grad is not None and mu.grad.abs().min() > 0
    assert logvar.grad is not None and logvar.grad.abs().min() > 0


def test_reparameterize_samples_have_the_posterior_mean_and_std() -> None:
    vae = _tiny_vae()
    n = 200_000
    mu = torch.tensor([1.5, -2.0, 0.0]).expand(n, 3)
    std = torch.tensor([0.5, 2.0, 1.0])
    logvar = (2 * std.log()).expand(n, 3)

    z = vae.reparameterize(mu, logvar)

    torch.testing.assert_close(z.mean(0), mu[0], rtol=0, atol=0.02)
    torch.testing.assert_close(z.std(0), std, rtol=0.01, atol=0)


def test_elbo_terms_are_the_recon_and_kl_of_one_forward_pass() -> None:
    vae = _tiny_vae()
    x = torch.rand(5, 1, 6, 6).round()
    torch.manual_seed(1)
    terms = elbo_terms(vae, x)
    torch.manual_seed(1)
    out = vae(x)

    assert terms.recon.shape == (5,) and terms.kl.shape == (5, 4)
    expected_recon = -Bernoulli(logits=out.params).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(terms.recon, expected_recon)
    torch.testing.assert_close(terms.kl, kl_standard_normal(out.mu, out.logvar))
    for name in ("z", "mu", "logvar"):
        torch.testing.assert_close(getattr(terms, name), getattr(out, name))


def test_loss_at_beta_one_is_the_negative_elbo_and_grows_with_beta() -> None:
    unused = torch.zeros(2, 2)
    terms = ELBOTerms(
        recon=torch.tensor([10.0, 20.0]),
        kl=torch.tensor([[1.0, 2.0], [3.0, 0.0]]),
        z=unused,
        mu=unused,
        logvar=unused,
    )

    assert terms.elbo.item() == pytest.approx(18.0)
    assert terms.loss(1.0).item() == pytest.approx(terms.elbo.item())
    assert terms.loss(0.0).item() == pytest.approx(15.0)
    assert terms.loss(4.0).item() == pytest.approx(27.0)


def test_loss_is_finite_under_bf16_autocast_with_extreme_logvar() -> None:
    latent = 4
    vae = build_vae((1, 8, 8), latent, "conv", [16], [4, 8], "gaussian")
    head = vae.encoder[-1]
    with torch.no_grad():
        # Pre-clamp log σ² of ±1e4 for every input: exp() of it overflows float32 and bf16.
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0] * latent + [1e4, -1e4] * (latent // 2)))
    x = torch.rand(3, 1, 8, 8)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, logvar = vae.encode(x)
        terms = elbo_terms(vae, x)
    terms.loss(4.0).backward()

    expected_logvar = torch.tensor([LOGVAR_MAX, LOGVAR_MIN] * (latent // 2)).expand(3, latent)
    torch.testing.assert_close(logvar.float(), expected_logvar)
    assert terms.recon.dtype == torch.float32 and terms.kl.dtype == torch.float32
    assert torch.isfinite(terms.recon).all() and torch.isfinite(terms.kl).all()
    grads = [p.grad for p in vae.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
