"""DIP-VAE (Kumar et al. 2018): the ELBO plus a penalty pulling a covariance of the code to I.

The prior N(0, I) has independent dimensions of unit variance; DIP-VAE asks the same of the
aggregate posterior q(z) = E_x q(z|x), by matching covariances, which a minibatch can estimate:
  - DIP-VAE-I penalises Cov_x[μ(x)], the covariance of the posterior means;
  - DIP-VAE-II penalises Cov_q(z)[z] = E_x[diag σ²(x)] + Cov_x[μ(x)], that of q(z) itself
    (the law of total covariance for a mixture of diagonal Gaussians).
The penalty λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)² weighs decorrelation (off-diagonal)
and unit variance (diagonal) apart. It is a property of the batch, not of one example, so it
is added once to the batch mean of recon + KL, in nats per example like the rest.
"""

from torch import Tensor


def covariance(x: Tensor) -> Tensor:
    """The (D, D) covariance of the rows of x (B, D) in float32, over the batch (divided by B,
    as the expectations of the paper are); of μ, it is DIP-VAE-I's matrix.

    A mean of outer products, not a matrix product, which autocast would run in bf16/fp16.
    """
    centred = x.float() - x.float().mean(0)
    return (centred[:, :, None] * centred[:, None, :]).mean(0)


def covariance_of_codes(mu: Tensor, logvar: Tensor) -> Tensor:
    """DIP-VAE-II's matrix: Cov_q(z)[z] = E_x[diag σ²(x)] + Cov_x[μ(x)]."""
    return covariance(mu) + logvar.float().exp().mean(0).diag()


def dip_penalty(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """λ_od · (sum of squared off-diagonal entries) + λ_d · (sum of squared distances of the
    diagonal from 1): zero exactly when `cov` is the identity."""
    diagonal = cov.diagonal()
    off_diagonal = cov - diagonal.diag()
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()
