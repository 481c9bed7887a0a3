"""What the disentanglement metrics need from a data set and from a model.

A data set with known generative factors renders observations for any combination of factor
values, so that a metric can draw examples with one factor held fixed (the BetaVAE and FactorVAE
scores) as well as plain random ones; a representation maps observations to codes, for a VAE its
encoder mean μ. Factors are drawn uniformly and independently over their values, as in dSprites
and the other data sets of disentanglement_lib, whose metrics these follow.
"""

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from betavae.vae import VAE

Representation = Callable[[Tensor], Tensor]
"""Observations (N, ...) to codes (N, D), on any device."""

# Observations rendered and encoded per call: bounds memory (64×64 floats: 16 MB) whatever the
# number of examples a metric asks for.
ENCODE_BATCH = 1024


class GroundTruthData(Protocol):
    """A data set that is a generative process: every combination of factor values, on demand."""

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    """How many values each factor takes; a factor's values are indexed 0 … size − 1."""

    def observations(self, factor_indices: Tensor) -> Tensor:
        """Observations (N, ...), as the representation takes them, of factor indices (N, K)."""
        ...


def sample_factors(data: GroundTruthData, n: int, generator: torch.Generator) -> Tensor:
    """(n, K) int64 factor indices, each factor uniform over its values, independently."""
    columns = [torch.randint(size, (n,), generator=generator) for size in data.factor_sizes]
    return torch.stack(columns, dim=1)


def represent(data: GroundTruthData, representation: Representation, factors: Tensor) -> Tensor:
    """(N, D) float64 codes, on the CPU, of the observations of factor indices (N, K)."""
    codes = [
        representation(data.observations(factors[start : start + ENCODE_BATCH])).double().cpu()
        for start in range(0, len(factors), ENCODE_BATCH)
    ]
    return torch.cat(codes)


def sample_codes(
    data: GroundTruthData, representation: Representation, n: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(codes (n, D) float64, factor indices (n, K) int64) of n random observations."""
    factors = sample_factors(data, n, generator)
    return represent(data, representation, factors), factors


def encoder_mean(vae: VAE) -> Representation:
    """The VAE's posterior mean as a representation, in eval mode: images are moved to the VAE's
    device and μ comes back as it is, so the metrics run the same on a CPU or a GPU."""
    vae.eval()
    device = next(vae.parameters()).device

    @torch.no_grad()
    def mu(images: Tensor) -> Tensor:
        return vae.encode(images.to(device))[0]

    return mu
