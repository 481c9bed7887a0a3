"""The two scores that intervene on the data: hold one factor fixed, let the others vary, and
ask whether the codes show which factor it was.

BetaVAE score (Higgins et al. 2017): pairs of observations share the fixed factor; the mean
|z₁ − z₂| over a batch of pairs goes to a linear classifier that must name the factor.
FactorVAE score (Kim & Mnih 2018): in a batch that shares the fixed factor, the code dimension
whose variance shrank the most (against its variance over all data) votes for that factor; each
dimension is then read as the factor it got most votes for. Both are computed as
disentanglement_lib does (evaluation/metrics/beta_vae.py and factor_vae.py), with its gin
defaults; the score is the accuracy on examples drawn afresh, not those the classifier was fitted
on. Chance is 1/K for K factors.
"""

import torch
from sklearn.linear_model import LogisticRegression
from torch import Tensor

from betavae.evaluation.ground_truth import (
    GroundTruthData,
    Representation,
    represent,
    sample_factors,
)

# disentanglement_lib's gin defaults (metric_configs/beta_vae_sklearn.gin, factor_vae_metric.gin).
BATCH_SIZE = 64
NUM_TRAIN = 10_000
NUM_EVAL = 5_000
NUM_VARIANCE_ESTIMATE = 10_000
# A dimension whose standard deviation over the data is below this has collapsed to a constant
# and takes no part in the FactorVAE vote (prune_dims.threshold).
PRUNE_THRESHOLD = 0.05


def beta_vae_score(
    data: GroundTruthData,
    representation: Representation,
    generator: torch.Generator,
    batch_size: int = BATCH_SIZE,
    num_train: int = NUM_TRAIN,
    num_eval: int = NUM_EVAL,
) -> float:
    """Accuracy of the BetaVAE score's classifier on `num_eval` fresh points, in [0, 1]."""
    train_x, train_y = _beta_vae_points(data, representation, num_train, batch_size, generator)
    eval_x, eval_y = _beta_vae_points(data, representation, num_eval, batch_size, generator)
    # disentanglement_lib's classifier: scikit-learn's logistic regression with its defaults, on
    # the unscaled features. Those defaults are L-BFGS on the multinomial loss since
    # scikit-learn 0.22; the 2019 study's were liblinear, one class against the rest.
    classifier = LogisticRegression(random_state=0).fit(train_x.numpy(), train_y.numpy())
    return float(classifier.score(eval_x.numpy(), eval_y.numpy()))


def factor_vae_score(
    data: GroundTruthData,
    representation: Representation,
    generator: torch.Generator,
    batch_size: int = BATCH_SIZE,
    num_train: int = NUM_TRAIN,
    num_eval: int = NUM_EVAL,
    num_variance_estimate: int = NUM_VARIANCE_ESTIMATE,
    prune_threshold: float = PRUNE_THRESHOLD,
) -> float:
    """Accuracy of the FactorVAE score's majority vote on `num_eval` fresh points, in [0, 1];
    0 when every dimension has collapsed (nothing to vote with)."""
    factors = sample_factors(data, num_variance_estimate, generator)
    variance = represent(data, representation, factors).var(dim=0)
    active = variance.sqrt() >= prune_threshold
    if not active.any():
        return 0.0
    scale = (variance, active)
    train = _factor_vae_votes(data, representation, num_train, batch_size, generator, *scale)
    factor_of_dimension = train.argmax(dim=0)
    votes = _factor_vae_votes(data, representation, num_eval, batch_size, generator, *scale)
    correct = votes[factor_of_dimension, torch.arange(votes.shape[1])].sum()
    return (correct / votes.sum()).item()


def _held_factors(
    data: GroundTruthData, num_points: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(the factor held fixed (P,), a mask (P, 1, K) of it) for P points of a score."""
    held = torch.randint(len(data.factor_sizes), (num_points,), generator=generator)
    mask = torch.nn.functional.one_hot(held, len(data.factor_sizes)).bool()[:, None, :]
    return held, mask


def _batches(
    data: GroundTruthData, num_points: int, batch_size: int, generator: torch.Generator
) -> Tensor:
    """(P, B, K) factor indices: one batch of B random factor combinations per point."""
    return sample_factors(data, num_points * batch_size, generator).view(num_points, batch_size, -1)


def _codes(data: GroundTruthData, representation: Representation, batches: Tensor) -> Tensor:
    """(P, B, D) codes of (P, B, K) factor indices."""
    return represent(data, representation, batches.flatten(0, 1)).view(*batches.shape[:2], -1)


def _beta_vae_points(
    data: GroundTruthData,
    representation: Representation,
    num_points: int,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """(features (P, D): mean |z₁ − z₂| over a batch of pairs, labels (P,): the shared factor)."""
    held, mask = _held_factors(data, num_points, generator)
    first = _batches(data, num_points, batch_size, generator)
    second = torch.where(mask, first, _batches(data, num_points, batch_size, generator))
    difference = _codes(data, representation, first) - _codes(data, representation, second)
    return difference.abs().mean(dim=1), held


def _factor_vae_votes(
    data: GroundTruthData,
    representation: Representation,
    num_points: int,
    batch_size: int,
    generator: torch.Generator,
    variance: Tensor,
    active: Tensor,
) -> Tensor:
    """(K, D) int64: how often holding factor k fixed shrank dimension d's variance the most."""
    held, mask = _held_factors(data, num_points, generator)
    batches = _batches(data, num_points, batch_size, generator)
    batches = torch.where(mask, batches[:, :1], batches)
    shrinkage = _codes(data, representation, batches).var(dim=1) / variance
    dimension = shrinkage.masked_fill(~active, torch.inf).argmin(dim=1)
    votes = torch.zeros(len(data.factor_sizes), len(variance), dtype=torch.int64)
    return votes.index_put_((held, dimension), torch.ones_like(held), accumulate=True)
