"""The β-VAE in plain PyTorch: networks, likelihoods and the objectives, with no training loop."""

from betavae.vae.dip import covariance, covariance_of_codes, dip_penalty
from betavae.vae.factor_vae import (
    FactorVAETerms,
    discriminator,
    discriminator_loss,
    factor_vae_loss,
    factor_vae_terms,
    permute_dims,
    total_correlation_estimate,
)
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
    "FactorVAETerms",
    "GaussianLikelihood",
    "KLDecomposition",
    "VAEOutput",
    "beta_tc_loss",
    "build_vae",
    "capacity_at",
    "capacity_loss",
    "covariance",
    "covariance_of_codes",
    "decompose_kl",
    "dip_penalty",
    "discriminator",
    "discriminator_loss",
    "elbo_terms",
    "factor_vae_loss",
    "factor_vae_terms",
    "importance_weighted_log_likelihood",
    "kl_standard_normal",
    "log_normal",
    "permute_dims",
    "total_correlation_estimate",
]
