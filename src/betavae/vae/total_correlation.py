"""β-TCVAE (Chen et al. 2018): the KL term split into three parts, the one in the middle weighed.

Averaged over the data, KL(q(z|x) ‖ p(z)) = I(x; z) + TC(z) + Σ_d KL(q(z_d) ‖ p(z_d)):
  - index-code mutual information I(x; z) = E[log q(z|x) − log q(z)],
  - total correlation TC(z) = E[log q(z) − Σ_d log q(z_d)], zero when the dimensions of the
    aggregate posterior q(z) = E_x q(z|x) are independent,
  - dimension-wise KL E[Σ_d log q(z_d) − log p(z_d)], each dimension's marginal against the prior.
β-TCVAE optimises recon + I + β·TC + dim-KL: only dependence between dimensions is penalised
more, not the information the code carries about x.

q(z) is a mixture over the whole data set, which one minibatch cannot evaluate; the
minibatch-weighted-sampling (MWS) estimator of the paper uses the batch's own posteriors,
log q(z_i) ≈ log Σ_j q(z_i|x_j) − log(N·M), for a batch of M drawn from N examples (and the
same per dimension for q(z_d)). N only shifts the values (log(N·M) is a constant), not the
gradients. The estimate is biased: where the batch is the whole data set (M = N) its log q(z)
is exactly log N too low, so it reports the mutual information log N too high, the TC
(D − 1)·log N too high and the dimension-wise KL D·log N too low. The three parts always sum
to the one-sample KL estimate log q(z|x) − log p(z) of each example.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def log_normal(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; μ, exp(logvar)) elementwise (broadcasting), in float32."""
    x, mu, logvar = x.float(), mu.float(), logvar.float()
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mu).pow(2) * torch.exp(-logvar))


@dataclass
class KLDecomposition:
    """The three parts of the KL for each example of a batch, (B,) float32 each, in nats."""

    mutual_information: Tensor
    total_correlation: Tensor
    dimension_wise_kl: Tensor

    @property
    def kl(self) -> Tensor:
        """Their sum: the one-sample estimate log q(z|x) − log p(z) of each example's KL."""
        return self.mutual_information + self.total_correlation + self.dimension_wise_kl


def decompose_kl(z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int) -> KLDecomposition:
    """MI, TC and dimension-wise KL at the samples z (B, D) of the posteriors N(μ, σ²) (B, D),
    by minibatch weighted sampling for a batch drawn from `dataset_size` examples."""
    batch_size = z.shape[0]
    # pairs[i, j, d] = log q(z_i,d | x_j): every sample under every posterior of the batch.
    pairs = log_normal(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    log_weight = math.log(dataset_size * batch_size)
    log_qz = torch.logsumexp(pairs.sum(2), dim=1) - log_weight
    log_prod_marginals = (torch.logsumexp(pairs, dim=1) - log_weight).sum(1)
    log_qz_given_x = log_normal(z, mu, logvar).sum(1)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return KLDecomposition(
        mutual_information=log_qz_given_x - log_qz,
        total_correlation=log_qz - log_prod_marginals,
        dimension_wise_kl=log_prod_marginals - log_pz,
    )


def beta_tc_loss(recon: Tensor, parts: KLDecomposition, beta: float) -> Tensor:
    """recon + I + β·TC + dim-KL, batch mean in nats per example (the paper's α = γ = 1)."""
    penalty = parts.mutual_information + beta * parts.total_correlation + parts.dimension_wise_kl
    return (recon + penalty).mean()
