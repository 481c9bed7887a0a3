"""The β-VAE in plain PyTorch: networks, likelihoods and the β-ELBO, with no training loop."""

from betavae.vae.importance import importance_weighted_log_likelihood
from betavae.vae.likelihoods import BernoulliLikelihood, GaussianLikelihood
from betavae.vae.model import LOGVAR_MAX, LOGVAR_MIN, VAE, VAEOutput, build_vae
from betavae.vae.objectives import ELBOTerms, elbo_terms, kl_standard_normal

__all__ = [
    "LOGVAR_MAX",
    "LOGVAR_MIN",
    "VAE",
    "BernoulliLikelihood",
    "ELBOTerms",
    "GaussianLikelihood",
    "VAEOutput",
    "build_vae",
    "elbo_terms",
    "importance_weighted_log_likelihood",
    "kl_standard_normal",
]
