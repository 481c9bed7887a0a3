"""One pass of a trained VAE (or M2) over a data split, keeping every per-example number the
apps need."""

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from betavae.vae import (
    M2VAE,
    VAE,
    elbo_terms,
    importance_weighted_log_likelihood,
    m2_importance_weighted_log_likelihood,
    unlabelled_terms,
)


@dataclass
class SplitResults:
    """Per-example results, in the order of the data loader, on the CPU.

    Of an M2, the code is z's posterior at the class q(y|x) predicts, and the bound −U(x),
    every image as unlabelled: its KL of y beside z's, and q(y|x) itself."""

    mu: Tensor
    """(N, D) posterior means."""
    logvar: Tensor
    """(N, D) posterior log-variances."""
    targets: Tensor
    """(N, ...) what the data set gives beside each image: labels, factors or attributes."""
    recon: Tensor
    """(N,) −log p(x|z) for one posterior sample, nats."""
    kl: Tensor
    """(N, D) KL(q(z|x) ‖ p(z)) per latent dimension, nats."""
    log_px: Tensor | None
    """(N,) importance-weighted estimate of log p(x), nats; None unless asked for."""
    kl_y: Tensor | None = None
    """(N,) M2's KL(q(y|x) ‖ p(y)), nats; None for a VAE."""
    class_probs: Tensor | None = None
    """(N, K) M2's q(y|x); None for a VAE."""

    @property
    def total_kl(self) -> Tensor:
        """(N,) the KL of every latent, summed over z's dimensions (and y's, for M2), nats."""
        return self.kl.sum(1) if self.kl_y is None else self.kl.sum(1) + self.kl_y

    @property
    def elbo(self) -> Tensor:
        """(N,) the negative ELBO (β = 1) per example, nats."""
        return self.recon + self.total_kl


@torch.no_grad()
def run_split(vae: VAE | M2VAE, loader: DataLoader, iwae_k: int | None = None) -> SplitResults:
    """Encode and score every example of `loader`; `iwae_k` also estimates log p(x) with k draws."""
    vae.eval()
    device = next(vae.parameters()).device
    parts: dict[str, list[Tensor]] = {name: [] for name in SplitResults.__annotations__}
    for images, targets in loader:
        images = images.to(device)
        scored = _m2_scores(vae, images) if isinstance(vae, M2VAE) else _vae_scores(vae, images)
        for name, value in scored.items():
            parts[name].append(value.float().cpu())
        parts["targets"].append(torch.as_tensor(targets).cpu())
        if iwae_k is not None:
            parts["log_px"].append(_log_px(vae, images, iwae_k).cpu())
    if not parts["mu"]:
        raise ValueError("the data split is empty")
    joined = {name: torch.cat(values) if values else None for name, values in parts.items()}
    return SplitResults(**joined)


def _vae_scores(vae: VAE, images: Tensor) -> dict[str, Tensor]:
    terms = elbo_terms(vae, images)
    mu, logvar = vae.encode(images)
    return {"mu": mu, "logvar": logvar, "recon": terms.recon, "kl": terms.kl}


def _m2_scores(m2: M2VAE, images: Tensor) -> dict[str, Tensor]:
    terms = unlabelled_terms(m2, images)
    mu, logvar = m2.encode(images, terms.log_q_y.argmax(1))
    return {
        "mu": mu,
        "logvar": logvar,
        "recon": terms.recon,
        "kl": terms.kl_z,
        "kl_y": terms.kl_y,
        "class_probs": terms.log_q_y.exp(),
    }


def _log_px(vae: VAE | M2VAE, images: Tensor, k: int) -> Tensor:
    if isinstance(vae, M2VAE):
        return m2_importance_weighted_log_likelihood(vae, images, k)
    return importance_weighted_log_likelihood(vae, images, k)


def split_images(loader: DataLoader) -> Tensor:
    """(N, C, H, W) every image of `loader`, in its order, on the CPU: the pixels that a
    baseline classifier reads."""
    return torch.cat([images.cpu() for images, _ in loader])
