"""The objectives: a reconstruction term plus a penalty on the code, as β-VAE, capacity or β-TC.

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
    """The terms of the objective for one batch, kept apart so β (or a capacity) can be applied,
    and varied over training, after the forward pass, and each term logged on its own.

    Whatever the objective, `elbo` is the β = 1 negative ELBO, so runs of any objective compare.
    """

    recon: Tensor
    """(B,) float32: −log p(x|z) per example, in nats."""
    kl: Tensor
    """(B, D) float32: KL(q(z|x) ‖ p(z)) per example and latent dimension, in nats."""
    z: Tensor
    """(B, D) float32: the posterior sample that was decoded (β-TC estimates q(z) at it)."""
    mu: Tensor
    """(B, D) float32: posterior means."""
    logvar: Tensor
    """(B, D) float32: posterior log-variances."""

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
    mu, logvar = out.mu.float(), out.logvar.float()
    return ELBOTerms(
        recon=recon, kl=kl_standard_normal(mu, logvar), z=out.z.float(), mu=mu, logvar=logvar
    )


def capacity_at(step: int, capacity_max: float, capacity_steps: int) -> float:
    """Burgess et al.'s target capacity C in nats: 0 at step 0, rising linearly to
    `capacity_max` at `capacity_steps` and held there (at once when `capacity_steps` is 0)."""
    if capacity_steps == 0:
        return capacity_max
    return capacity_max * min(1.0, step / capacity_steps)


def capacity_loss(terms: ELBOTerms, gamma: float, capacity: float) -> Tensor:
    """recon + γ·|KL − C| (Burgess et al. 2018), in nats per example.

    The KL is the batch mean, not each example's: C bounds how much the code carries on
    average, so single examples may carry more or less. A large γ holds the KL at C, and
    raising C slowly lets the code take in one factor after another, most useful first.
    """
    return terms.recon.mean() + gamma * (terms.kl.sum(1).mean() - capacity).abs()
