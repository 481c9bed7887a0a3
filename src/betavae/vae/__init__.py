"""The β-VAE and M2 in plain PyTorch: networks, likelihoods and objectives, no training loop."""

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
from betavae.vae.importance import (
    importance_weighted_log_likelihood,
    m2_importance_weighted_log_likelihood,
)
from betavae.vae.likelihoods import BernoulliLikelihood, GaussianLikelihood
from betavae.vae.m2 import M2VAE, M2AtLabel, build_m2
from betavae.vae.m2_objectives import (
    M2Terms,
    classification_loss,
    labelled_terms,
    semi_supervised_loss,
    unlabelled_terms,
)
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
    "M2VAE",
    "VAE",
    "BernoulliLikelihood",
    "ELBOTerms",
    "FactorVAETerms",
    "GaussianLikelihood",
    "KLDecomposition",
    "M2AtLabel",
    "M2Terms",
    "VAEOutput",
    "beta_tc_loss",
    "build_m2",
    "build_vae",
    "capacity_at",
    "capacity_loss",
    "classification_loss",
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
    "labelled_terms",
    "log_normal",
    "m2_importance_weighted_log_likelihood",
    "permute_dims",
    "semi_supervised_loss",
    "total_correlation_estimate",
    "unlabelled_terms",
]
