"""The Mutual Information Gap (Chen et al. 2018): is each true factor captured by one latent?

For every ground-truth factor v_k, the gap between the two latents with the highest mutual
information with it, divided by H(v_k); MIG is the mean over factors. 1 when each factor lives
in exactly one latent dimension, 0 when it is spread evenly or absent. Mutual information is
estimated from histograms of μ, the usual estimator (as in disentanglement_lib).
"""

from collections.abc import Sequence

import torch
from torch import Tensor

LATENT_BINS = 20
# Below this many examples most of a latent's 20 histogram bins hold one example or none, and
# the estimate describes the sample rather than the code.
MIN_MIG_EXAMPLES = 2 * LATENT_BINS


def mig_unavailable(factor_ids: Tensor) -> str | None:
    """Why MIG cannot be measured on these examples' (N, K) discrete factors; None if it can."""
    count = len(factor_ids)
    if count < MIN_MIG_EXAMPLES:
        return f"{count} example{'s' * (count != 1)}; MIG needs at least {MIN_MIG_EXAMPLES}"
    if all(column.unique().numel() < 2 for column in factor_ids.T):
        return "no factor varies in these examples"
    return None


def discretize_factors(factors: Tensor) -> Tensor:
    """(N, K) float factors on grids to (N, K) int64 ids, one id per distinct grid value."""
    columns = [torch.unique(column, return_inverse=True)[1] for column in factors.T]
    return torch.stack(columns, dim=1)


def discretize_latents(mu: Tensor, bins: int = LATENT_BINS) -> Tensor:
    """(N, D) μ to (N, D) int64 bin ids of equal-width bins spanning each dimension's range."""
    low, high = mu.min(0).values, mu.max(0).values
    scaled = (mu - low) / (high - low).clamp_min(1e-12)
    return (scaled * bins).long().clamp(0, bins - 1)


def _entropy(ids: Tensor) -> Tensor:
    p = torch.bincount(ids).double()
    p = p[p > 0] / len(ids)
    return -(p * p.log()).sum()


def _mutual_information(a: Tensor, b: Tensor) -> Tensor:
    joint = a * (int(b.max()) + 1) + b
    return _entropy(a) + _entropy(b) - _entropy(joint)


def mutual_information(mu: Tensor, factor_ids: Tensor) -> Tensor:
    """(D, K) float64: I(z_d; v_k) in nats for μ (N, D), binned, against discrete factors (N, K).

    With N examples the histogram estimate is biased upwards by about (bins − 1)(values − 1) / 2N
    nats, so a dimension that carries nothing still shows a few hundredths of a nat.
    """
    latents = discretize_latents(mu)
    rows = [[_mutual_information(z, factor) for factor in factor_ids.T] for z in latents.T]
    return torch.stack([torch.stack(row) for row in rows])


def normalized_mutual_information(mu: Tensor, factor_ids: Tensor) -> Tensor:
    """(D, K) float64: I(z_d; v_k) / H(v_k) for μ (N, D) against discrete factors (N, K).

    A factor that never varies in the data (H = 0) gets a column of NaN.
    """
    entropies = torch.stack([_entropy(factor) for factor in factor_ids.T])
    return mutual_information(mu, factor_ids) / entropies.where(entropies > 0, torch.nan)


def mutual_information_gap(mu: Tensor, factor_ids: Tensor) -> tuple[float, list[float | None]]:
    """(MIG, per-factor normalised gaps) for μ (N, D) against discrete factors (N, K).

    A factor that never varies in the data (H = 0) has no gap (None) and is left out of the mean.
    """
    gaps: list[float | None] = []
    for column in normalized_mutual_information(mu, factor_ids).T:
        if column.isnan().any():
            gaps.append(None)
            continue
        top = column.topk(min(2, len(column))).values
        second = top[1] if len(top) > 1 else torch.zeros((), dtype=top.dtype)
        gaps.append((top[0] - second).item())
    defined = [gap for gap in gaps if gap is not None]
    return (sum(defined) / len(defined) if defined else float("nan")), gaps


def most_informative_factors(mu: Tensor, factor_ids: Tensor) -> list[tuple[int, float] | None]:
    """For each latent dimension of μ (N, D), (k, I(z_d; v_k) / H(v_k)) for the factor v_k it
    shares the most information with; None when no factor varies. What a traversal row of that
    dimension shows, as far as the true factors can say: read the value against the estimator's
    floor (see `normalized_mutual_information`) before calling the dimension that factor's."""
    best = normalized_mutual_information(mu, factor_ids).nan_to_num(nan=-1.0).max(dim=1)
    return [
        (index, value) if value >= 0 else None
        for index, value in zip(best.indices.tolist(), best.values.tolist(), strict=True)
    ]


# A dimension is named after its factor in pictures when it shares at least this fraction of the
# factor's entropy with it: well above the estimator's floor for a dimension that carries
# nothing (0.04 to 0.11 on the preset's test split), below what a factor's own dimension shows
# (0.4 to 0.65 there).
FACTOR_LABEL_THRESHOLD = 0.2


def dimension_factors(mu: Tensor, factors: Tensor, factor_names: Sequence[str]) -> list[str | None]:
    """For each latent dimension of μ (N, D), the name of the factor it follows, if any."""
    found = most_informative_factors(mu, discretize_factors(factors))
    return [
        factor_names[best[0]] if best is not None and best[1] >= FACTOR_LABEL_THRESHOLD else None
        for best in found
    ]
