"""FactorVAE (Kim & Mnih 2018): the ELBO plus γ times a discriminator's estimate of the TC.

The total correlation TC(z) = KL(q(z) ‖ q̄(z)), q̄(z) = Π_d q(z_d), has no closed form, but
samples of both sides are cheap: the batch's codes z ~ q(z), and the same codes with each
dimension shuffled across the batch on its own, which keeps every marginal and breaks all
dependence between dimensions, so ~ q̄(z). A classifier D trained to tell them apart learns
the density ratio (the density-ratio trick): at its optimum, with 2 logits (real, permuted),
logit_real − logit_permuted = log q(z)/q̄(z), whose mean over z ~ q(z) is the TC.

The VAE minimises recon + KL + γ·TC through D (D held fixed); D minimises its cross-entropy on
real against permuted codes (the codes held fixed). `factor_vae_terms` builds both from one
forward pass and keeps them apart, so one backward pass trains each network on its own loss
only. As in disentanglement_lib, the permuted codes come from the same batch, not a second one.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from betavae.vae.objectives import ELBOTerms

# Kim & Mnih's discriminator for every data set (their appendix A, as disentanglement_lib
# builds it): 6 fully connected layers of 1000 units with leaky ReLUs (TensorFlow's slope, 0.2).
DISCRIMINATOR_LAYERS = 6
DISCRIMINATOR_WIDTH = 1000
LEAKY_SLOPE = 0.2
REAL, PERMUTED = 0, 1  # the classes of the discriminator's two logits


def discriminator(latent_dim: int) -> nn.Sequential:
    """The MLP from a code (B, D) to its 2 logits (B, 2): real (from q(z)) or permuted."""
    layers: list[nn.Module] = []
    width = latent_dim
    for _ in range(DISCRIMINATOR_LAYERS):
        layers += [nn.Linear(width, DISCRIMINATOR_WIDTH), nn.LeakyReLU(LEAKY_SLOPE)]
        width = DISCRIMINATOR_WIDTH
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


def permute_dims(z: Tensor) -> Tensor:
    """z (B, D) with each column shuffled across the batch by its own random permutation: a
    sample of Π_d q(z_d) from a sample of q(z)."""
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


def total_correlation_estimate(logits: Tensor) -> Tensor:
    """The discriminator's log q(z)/q̄(z) for each code, (B,) float32: its TC estimate is
    the batch mean."""
    logits = logits.float()
    return logits[:, REAL] - logits[:, PERMUTED]


def discriminator_loss(real_logits: Tensor, permuted_logits: Tensor) -> Tensor:
    """Cross-entropy of telling real codes from permuted ones, each half weighted ½, in nats:
    log 2 for a discriminator that cannot tell them apart."""
    real = real_logits.float().log_softmax(1)[:, REAL]
    permuted = permuted_logits.float().log_softmax(1)[:, PERMUTED]
    return -0.5 * (real.mean() + permuted.mean())


@dataclass
class FactorVAETerms:
    """FactorVAE's two losses' own parts for one batch, each logged and each optimised."""

    total_correlation: Tensor
    """(B,) float32: D's log-ratio at each code; gradients reach the codes, not D."""
    discriminator_loss: Tensor
    """() float32: D's cross-entropy; gradients reach D, not the codes."""


def factor_vae_terms(discriminator: nn.Module, z: Tensor) -> FactorVAETerms:
    """Both losses' parts for codes z (B, D), routed so that the sum of the VAE's and D's
    losses, backpropagated once, gives each network the gradient of its own loss alone."""
    # D's weights as constants: the VAE's loss moves the codes through D, never D.
    frozen = {name: weight.detach() for name, weight in discriminator.named_parameters()}
    tc = total_correlation_estimate(functional_call(discriminator, frozen, (z,)))
    # The codes as constants: D's loss moves D, never the encoder.
    codes = z.detach()
    logits = discriminator(torch.cat([codes, permute_dims(codes)]))
    real_logits, permuted_logits = logits.chunk(2)
    return FactorVAETerms(tc, discriminator_loss(real_logits, permuted_logits))


def factor_vae_loss(terms: ELBOTerms, total_correlation: Tensor, gamma: float) -> Tensor:
    """recon + KL + γ·TC, batch mean in nats per example."""
    return (terms.recon + terms.kl.sum(1) + gamma * total_correlation).mean()
