"""Observation models p(x|z): what the decoder's output means and how to score an image under it.

Both compute log p(x|z) in float32 whatever the decoder's dtype, because summing ~10^3-10^4
per-pixel terms in bf16/fp16 under autocast loses most of the loss's significant digits.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BernoulliLikelihood(nn.Module):
    """Independent Bernoulli pixels parameterised by logits: the classic MNIST VAE likelihood.

    For grey levels x in [0, 1] the same formula is the binary cross-entropy, which is not a
    normalised density over continuous x but is the customary VAE objective for such images.
    """

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) per example, shape (B,): minus the per-pixel BCE, summed over C, H, W."""
        bce = F.binary_cross_entropy_with_logits(params.float(), x.float(), reduction="none")
        return -bce.flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        """Pixel probabilities, the image to show for a reconstruction or a sample."""
        return torch.sigmoid(params)

    def params_of_mean(self, mean: Tensor) -> Tensor:
        """The logits whose `mean` is `mean`, kept finite for a mean of exactly 0 or 1."""
        return torch.logit(mean, eps=1e-3)


class GaussianLikelihood(nn.Module):
    """Independent Normal pixels around the decoder's output, with one std per channel.

    The std sets how much reconstruction counts against the KL (a smaller std is like a smaller
    β), so it is either fixed from the config or learned, starting from the configured value.
    """

    log_std: Tensor

    def __init__(self, channels: int, std: float = 0.1, learn_std: bool = False) -> None:
        super().__init__()
        if std <= 0:
            raise ValueError(f"gaussian std must be positive, got {std}")
        log_std = torch.full((channels,), math.log(std))
        if learn_std:
            self.log_std = nn.Parameter(log_std)
        else:
            # A buffer, not a constant, so that fixed and learned std share one checkpoint layout
            # and the value follows the model across devices.
            self.register_buffer("log_std", log_std)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log N(x; params, std²) per example, shape (B,), summed over C, H, W with its constant.

        The 0.5·log(2π) constant is kept so the loss is a true negative log-likelihood in nats,
        comparable across std settings and with other reported numbers.
        """
        log_std = self.log_std.float().view(1, -1, 1, 1)
        standardized = (x.float() - params.float()) * torch.exp(-log_std)
        log_density = -0.5 * standardized.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        return log_density.flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        """The decoder's mean clamped to [0, 1], since nothing else keeps it in the image range."""
        return params.clamp(0.0, 1.0)

    def params_of_mean(self, mean: Tensor) -> Tensor:
        """The decoder's output whose `mean` is `mean`: the mean itself."""
        return mean


def build_likelihood(
    likelihood: str, channels: int, gaussian_std: float, learn_gaussian_std: bool
) -> BernoulliLikelihood | GaussianLikelihood:
    """p(x|z) from config values: "bernoulli" or "gaussian" (with one std per channel)."""
    if likelihood == "bernoulli":
        return BernoulliLikelihood()
    if likelihood == "gaussian":
        return GaussianLikelihood(channels, gaussian_std, learn_gaussian_std)
    raise ValueError(f"unknown likelihood {likelihood!r}; expected 'bernoulli' or 'gaussian'")
