"""One pass of a trained VAE over a data split, keeping every per-example number the apps need."""

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from betavae.vae import VAE, elbo_terms, importance_weighted_log_likelihood


@dataclass
class SplitResults:
    """Per-example results, in the order of the data loader, on the CPU."""

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

    @property
    def elbo(self) -> Tensor:
        """(N,) the negative ELBO (β = 1) per example, nats."""
        return self.recon + self.kl.sum(1)


@torch.no_grad()
def run_split(vae: VAE, loader: DataLoader, iwae_k: int | None = None) -> SplitResults:
    """Encode and score every example of `loader`; `iwae_k` also estimates log p(x) with k draws."""
    vae.eval()
    device = next(vae.parameters()).device
    parts: dict[str, list[Tensor]] = {name: [] for name in SplitResults.__annotations__}
    for images, targets in loader:
        images = images.to(device)
        terms = elbo_terms(vae, images)
        mu, logvar = vae.encode(images)
        parts["mu"].append(mu.float().cpu())
        parts["logvar"].append(logvar.float().cpu())
        parts["targets"].append(torch.as_tensor(targets).cpu())
        parts["recon"].append(terms.recon.cpu())
        parts["kl"].append(terms.kl.cpu())
        if iwae_k is not None:
            parts["log_px"].append(importance_weighted_log_likelihood(vae, images, iwae_k).cpu())
    if not parts["mu"]:
        raise ValueError("the data split is empty")
    joined = {name: torch.cat(values) if values else None for name, values in parts.items()}
    return SplitResults(**joined)
