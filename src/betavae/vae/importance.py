"""The importance-weighted bound (IWAE, Burda et al. 2016): a tighter estimate of log p(x).

With k draws z_i ~ q(z|x), log p(x) ≥ E[log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x)], a bound that
equals the ELBO for k = 1, never decreases with k, and reaches log p(x) as k → ∞.
"""

import math

import torch
from torch import Tensor

from betavae.vae.m2 import M2VAE, M2AtLabel
from betavae.vae.model import VAE

# Latents decoded per decoder call: bounds memory to about this many decoded images, whatever
# k and the batch size are.
DEFAULT_LATENTS_PER_CHUNK = 4096


def _standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)


def importance_weighted_log_likelihood(
    vae: VAE | M2AtLabel, x: Tensor, k: int, latents_per_chunk: int = DEFAULT_LATENTS_PER_CHUNK
) -> Tensor:
    """The k-sample estimate of log p(x) per example, shape (B,), in nats, in float32.

    The k draws are decoded a chunk at a time so that memory stays bounded; only the (k, B)
    log-weights are kept, and combined with a log-sum-exp at the end.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    mu, logvar = (t.float() for t in vae.encode(x))
    std = torch.exp(0.5 * logvar)
    batch = x.shape[0]
    draws_per_chunk = max(1, latents_per_chunk // batch)
    log_weights = []
    for start in range(0, k, draws_per_chunk):
        draws = min(draws_per_chunk, k - start)
        eps = torch.randn(draws, *mu.shape, device=mu.device)
        z = mu + std * eps
        params = vae.decode(z.flatten(0, 1).to(x.dtype))
        targets = x.expand(draws, *x.shape).flatten(0, 1)
        log_px_z = vae.likelihood.log_prob(params, targets).view(draws, batch)
        # log q(z|x) via ε: (z - μ)/σ is ε exactly, which avoids dividing by a tiny σ.
        log_qz = _standard_normal_log_density(eps) - 0.5 * logvar.sum(-1)
        log_weights.append(log_px_z + _standard_normal_log_density(z) - log_qz)
    return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(k)


def m2_importance_weighted_log_likelihood(
    m2: M2VAE, x: Tensor, k: int, latents_per_chunk: int = DEFAULT_LATENTS_PER_CHUNK
) -> Tensor:
    """M2's log p(x) = log Σ_y p(y) p(x|y), per example (B,): the sum over the K classes exact,
    each p(x|y) the k-sample bound with q(z|x,y). It costs K times a VAE's, and with k = 1 it
    is not −U(x) but a bound at least as tight, since no q(y|x) is fitted to the classes."""
    per_class = torch.stack(
        [
            importance_weighted_log_likelihood(m2.at_label(y), x, k, latents_per_chunk)
            for y in range(m2.num_classes)
        ]
    )
    return torch.logsumexp(per_class, dim=0) - math.log(m2.num_classes)
