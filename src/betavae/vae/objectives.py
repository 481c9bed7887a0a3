"""The β-VAE objective: a reconstruction term plus β times the KL to the standard normal prior.

Everything here runs in float32 even under torch.autocast: the KL exponentiates log σ², and
the per-example sums run over thousands of terms, both of which bf16/fp16 handle badly.
"""

from dataclasses import dataclass

from torch import Tensor

from betavae.vae.model import VAE


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, 1)) per latent dimension, shape (B, D), in float32.

    Closed form ½(μ² + σ² − 1 − log σ²); kept per dimension rather than summed so callers can
    log which latent dimensions are active.
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


@dataclass
class ELBOTerms:
    """The two terms of the objective for one batch, kept apart so β can be applied (and varied
    over training) after the forward pass, and each term logged on its own."""

    recon: Tensor
    """(B,) float32: −log p(x|z) per example, in nats."""
    kl: Tensor
    """(B, D) float32: KL(q(z|x) ‖ p(z)) per example and latent dimension, in nats."""

    def loss(self, beta: float) -> Tensor:
        """The β-VAE loss to minimise: batch mean of recon + β·KL, in nats per example."""
        return (self.recon + beta * self.kl.sum(1)).mean()

    @property
    def elbo(self) -> Tensor:
        """The negative ELBO (β = 1) in nats per example: the β-independent number to compare
        models by, since the β-weighted loss changes meaning with β."""
        return self.loss(1.0)


def elbo_terms(vae: VAE, x: Tensor) -> ELBOTerms:
    """Run one forward pass and score it, with the loss maths in float32 even under autocast."""
    out = vae(x)
    recon = -vae.likelihood.log_prob(out.params.float(), x.float())
    return ELBOTerms(recon=recon, kl=kl_standard_normal(out.mu.float(), out.logvar.float()))
