"""Images made from the latent space: traversals and interpolations (and the scatter in plots).

These return image tensors, so the same grids can be written to PNG files by the apps and to
TensorBoard by a training callback.
"""

import torch
from torch import Tensor

from betavae.vae import VAE


@torch.no_grad()
def traversal(vae: VAE, mu: Tensor, order: Tensor, span: float, steps: int) -> Tensor:
    """(len(order) · steps, C, H, W) images: row r sweeps dimension order[r] over ±span.

    The other dimensions stay at `mu` (D,), a data point's posterior mean. Since the prior is
    N(0, I), ±3 covers nearly all of it; rows are typically ordered by KL, most informative first.
    """
    values = torch.linspace(-span, span, steps, device=mu.device, dtype=mu.dtype)
    latents = mu.repeat(len(order), steps, 1)  # (rows, steps, D)
    rows = torch.arange(len(order), device=mu.device)
    latents[rows, :, order.to(mu.device)] = values
    return vae.likelihood.mean(vae.decode(latents.flatten(0, 1))).float()


@torch.no_grad()
def interpolation(vae: VAE, start: Tensor, end: Tensor, steps: int) -> Tensor:
    """(P · steps, C, H, W) images decoded along the lines from start[p] to end[p], both (P, D)."""
    weights = torch.linspace(0, 1, steps, device=start.device, dtype=start.dtype)[None, :, None]
    latents = start[:, None] + weights * (end - start)[:, None]
    return vae.likelihood.mean(vae.decode(latents.flatten(0, 1))).float()
