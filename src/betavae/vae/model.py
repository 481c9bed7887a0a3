"""The VAE itself: a Gaussian encoder q(z|x), a decoder, and a likelihood p(x|z) glued together."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from betavae.vae.likelihoods import build_likelihood
from betavae.vae.networks import build_networks

# log σ² is clamped to this range so that σ = exp(½ log σ²) ≤ e^5 ≈ 148 keeps z = μ + σ·ε (and
# the decoder's input) far below fp16's maximum (65504) under 16-mixed autocast, and the KL's
# exp(log σ²) stays finite, even when a diverging encoder produces huge values. A posterior
# wider than the N(0, I) prior (σ > 1) is never useful, so the bound costs nothing.
LOGVAR_MIN: float = -30.0
LOGVAR_MAX: float = 10.0


def gaussian_posterior(features: Tensor) -> tuple[Tensor, Tensor]:
    """(mu, logvar) from an encoder's 2·D outputs (means, then log-variances), with logvar
    clamped so later exp() calls cannot overflow."""
    mu, logvar = features.chunk(2, dim=1)
    return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = μ + σ·ε with ε ~ N(0, I): the randomness sits in ε, so gradients reach μ and σ."""
    std = torch.exp(0.5 * logvar)
    return mu + std * torch.randn_like(std)


@dataclass
class VAEOutput:
    """Everything one forward pass produces that the loss and logging need."""

    params: Tensor
    """(B, C, H, W) likelihood parameters: logits (Bernoulli) or means (Gaussian)."""
    mu: Tensor
    """(B, D) posterior means."""
    logvar: Tensor
    """(B, D) posterior log-variances, already clamped to [LOGVAR_MIN, LOGVAR_MAX]."""
    z: Tensor
    """(B, D) the reparameterised sample that was decoded."""


class VAE(nn.Module):
    """A VAE with a diagonal Gaussian posterior and a standard normal prior.

    The encoder must output 2·latent_dim features (means, then log-variances); the decoder maps
    latent_dim features to likelihood parameters of `image_shape`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: nn.Module,
        latent_dim: int,
        image_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.image_shape = image_shape

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z|x), with logvar clamped so later exp() calls cannot overflow."""
        return gaussian_posterior(self.encoder(x))

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        return reparameterize(mu, logvar)

    def decode(self, z: Tensor) -> Tensor:
        """Likelihood parameters (B, C, H, W) for latents (B, D)."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(params=self.decode(z), mu=mu, logvar=logvar, z=z)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean, not a sample, so reconstructions shown are reproducible."""
        mu, _ = self.encode(x)
        return self.likelihood.mean(self.decode(mu))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images (n, C, H, W) from the prior; pass a generator for the same images each call."""
        weight = next(self.parameters())
        z = torch.randn(
            n, self.latent_dim, generator=generator, device=weight.device, dtype=weight.dtype
        )
        return self.likelihood.mean(self.decode(z))


def build_vae(
    image_shape: tuple[int, int, int],
    latent_dim: int,
    network: str,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
    likelihood: str,
    gaussian_std: float = 0.1,
    learn_gaussian_std: bool = False,
) -> VAE:
    """A VAE from config values: network in {"mlp", "conv"}, likelihood in {"bernoulli",
    "gaussian"}; the gaussian_* arguments only apply to the gaussian likelihood."""
    c, h, w = image_shape  # Hydra passes a ListConfig; nn.Unflatten only accepts a real tuple
    image_shape = (c, h, w)
    encoder, decoder = build_networks(network, image_shape, latent_dim, hidden_dims, channels)
    observation = build_likelihood(likelihood, c, gaussian_std, learn_gaussian_std)
    return VAE(encoder, decoder, observation, latent_dim, image_shape)
