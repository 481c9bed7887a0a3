"""The β-VAE in plain PyTorch: networks, likelihoods and the objectives, with no training loop."""

from betavae.vae.importance import importance_weighted_log_likelihood
from betavae.vae.likelihoods import BernoulliLikelihood, GaussianLikelihood
from betavae.vae.model import LOGVAR_MAX, LOGVAR_MIN, VAE, VAEOutput, build_vae
from betavae.vae.objectives import (
    ELBOTerms,
    capacity_at,
    capacity_loss,
    elbo_terms,
    kl_standard_normal,
)
from betavae.vae.total_correlation import (
    KLDecomposition,
    beta_tc_loss,
    decompose_kl,
    log_normal,
)

__all__ = [
    "LOGVAR_MAX",
    "LOGVAR_MIN",
    "VAE",
    "BernoulliLikelihood",
    "ELBOTerms",
    "GaussianLikelihood",
    "KLDecomposition",
    "VAEOutput",
    "beta_tc_loss",
    "build_vae",
    "capacity_at",
    "capacity_loss",
    "decompose_kl",
    "elbo_terms",
    "importance_weighted_log_likelihood",
    "kl_standard_normal",
    "log_normal",
]
