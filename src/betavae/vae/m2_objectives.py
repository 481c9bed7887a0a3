"""M2's objective (Kingma et al. 2014, eqs. 6-9): a bound for labelled images, one for
unlabelled images, and a classification term on the labelled ones.

With p(y) = 1/K and p(z) = N(0, I), and z ~ q(z|x,y) reparameterised:
  labelled     −L(x, y) = −log p(x|y,z) + KL(q(z|x,y) ‖ p(z)) − log p(y)
  unlabelled   −U(x)    = Σ_y q(y|x)·(−L(x, y)) − H(q(y|x))
each an upper bound on −log p of what was observed, in nats. The sum over y is exact, one
decoder pass per class, not sampled, so q(y|x) learns from unlabelled images through the
weights of the sum and the entropy. Both have the same three terms: −log p(y) = log K is
KL(δ_y ‖ p(y)), the KL of the point mass on the given label, and Σ_y q·(−log p(y)) − H(q) is
KL(q(y|x) ‖ p(y)). `M2Terms` holds them so they can be logged like the VAE's.

Everything here is float32 even under torch.autocast, like `objectives`.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from betavae.vae.m2 import M2VAE
from betavae.vae.model import VAEOutput
from betavae.vae.objectives import kl_standard_normal


@dataclass
class M2Terms:
    """The terms of −L(x, y) or −U(x) for each example of a batch, float32, in nats."""

    recon: Tensor
    """(B,) −log p(x|y,z): at the given y (labelled), expected under q(y|x) (unlabelled)."""
    kl_z: Tensor
    """(B, D) KL(q(z|x,y) ‖ p(z)) per latent dimension, at the given y or expected under q(y|x)."""
    kl_y: Tensor
    """(B,) log K (labelled), KL(q(y|x) ‖ p(y)) = log K − H(q(y|x)) (unlabelled)."""
    log_q_y: Tensor | None = None
    """(B, K) log q(y|x), the weights of the sum over y (unlabelled; None for labelled)."""

    @property
    def negative_bound(self) -> Tensor:
        """(B,) −L(x, y) or −U(x)."""
        return self.recon + self.kl_z.sum(1) + self.kl_y


def labelled_terms(m2: M2VAE, x: Tensor, y: Tensor) -> M2Terms:
    """−L(x, y) of images x with their labels y (B,), one forward pass."""
    return _terms_at_labels(m2, m2(x, y), x)


def unlabelled_terms(m2: M2VAE, x: Tensor) -> M2Terms:
    """−U(x) of unlabelled images: every image with every label in one batch of K·B."""
    k, b = m2.num_classes, len(x)
    logits, mu, logvar = m2.infer_at_every_label(x)  # class-major, as `labels` below
    log_q = torch.log_softmax(logits.float(), dim=1)  # (B, K)
    q = log_q.exp()
    labels = torch.arange(k, device=x.device).repeat_interleave(b)
    out = m2.decode_posterior(mu, logvar, labels)
    every = _terms_at_labels(m2, out, x.expand(k, *x.shape).flatten(0, 1))
    weights = q.T  # (K, B), the same order
    return M2Terms(
        recon=(weights * every.recon.view(k, b)).sum(0),
        kl_z=(weights[..., None] * every.kl_z.view(k, b, -1)).sum(0),
        kl_y=(q * log_q).sum(1) + math.log(k),
        log_q_y=log_q,
    )


def _terms_at_labels(m2: M2VAE, out: VAEOutput, x: Tensor) -> M2Terms:
    """−L(x, y) of the images x as decoded in `out` at their labels y."""
    recon = -m2.likelihood.log_prob(out.params.float(), x.float())
    return M2Terms(
        recon=recon,
        kl_z=kl_standard_normal(out.mu, out.logvar),
        kl_y=torch.full_like(recon, math.log(m2.num_classes)),
    )


def classification_loss(logits: Tensor, y: Tensor) -> Tensor:
    """(B,) −log q(y|x) of the labelled images, from q(y|x)'s logits (`M2VAE.classify`) and
    their labels y: the term the bounds leave out, since −L(x, y) does not involve q(y|x)."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def semi_supervised_loss(
    labelled: M2Terms,
    classification: Tensor,
    unlabelled: M2Terms,
    labelled_fraction: float,
    alpha: float,
) -> Tensor:
    """Kingma et al.'s J^α divided by the N training images: nats per example, to minimise.

    J^α = Σ_labelled −L + Σ_unlabelled −U + α_paper·E_labelled[−log q(y|x)]. Each batch mean
    is weighted by its part's share of the training set (`labelled_fraction` = N_l / N), so a
    labelled and an unlabelled batch of any sizes estimate J^α / N. Per example, the paper's
    α_paper = 0.1·N (the default of their code, alpha=0.1) is `alpha` = 0.1: each labelled
    image's −log q(y|x) weighs 0.1·N / N_l times as much as one image's bound, 50 for 100
    labels among MNIST's 50,000 training images.
    """
    bounds = (
        labelled_fraction * labelled.negative_bound.mean()
        + (1 - labelled_fraction) * unlabelled.negative_bound.mean()
    )
    return bounds + alpha * classification.mean()
