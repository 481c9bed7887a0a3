"""Disentanglement, completeness and informativeness (Eastwood & Williams 2018).

One gradient-boosted tree classifier per factor predicts it from all code dimensions; their
feature importances form a (D, K) matrix R. Disentanglement: how much each dimension's
importance goes to a single factor (1 − its entropy over factors, base K), averaged with weights
by the dimension's share of all importance. Completeness: the same for each factor over
dimensions (base D). Informativeness: the classifiers' accuracy on held-out data, averaged over
factors (disentanglement_lib reports accuracy where the paper speaks of error). As
disentanglement_lib computes it (evaluation/metrics/dci.py): scikit-learn's
`GradientBoostingClassifier` with its defaults (100 trees of depth 3).
"""

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from torch import Tensor

# Added to the importances before their entropy is taken, as disentanglement_lib does, so that
# an all-zero row (a dimension no tree uses) has a defined entropy: that of the uniform spread.
_EPSILON = 1e-11


def dci(
    codes_train: Tensor, factors_train: Tensor, codes_test: Tensor, factors_test: Tensor
) -> dict[str, float]:
    """{"disentanglement", "completeness", "informativeness_test"}, each in [0, 1], for codes
    (N, D) against discrete factor indices (N, K), train and test."""
    x_train, x_test = codes_train.numpy(), codes_test.numpy()
    importance = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    accuracy = []
    for k in range(factors_train.shape[1]):
        # A fixed random_state: the trees break ties between equally good splits at random.
        trees = GradientBoostingClassifier(random_state=0).fit(x_train, factors_train[:, k].numpy())
        importance[:, k] = np.abs(trees.feature_importances_)
        accuracy.append(np.mean(trees.predict(x_test) == factors_test[:, k].numpy()))
    return {
        "disentanglement": dci_disentanglement(importance),
        "completeness": dci_completeness(importance),
        "informativeness_test": float(np.mean(accuracy)),
    }


def dci_disentanglement(importance: np.ndarray) -> float:
    """From a (D, K) importance matrix: 1 when every dimension matters to one factor at most."""
    return _weighted_concentration(importance)


def dci_completeness(importance: np.ndarray) -> float:
    """From a (D, K) importance matrix: 1 when every factor is read from one dimension only."""
    return _weighted_concentration(importance.T)


def _weighted_concentration(importance: np.ndarray) -> float:
    """Mean over rows of 1 − the entropy of the row's distribution over columns (base: the number
    of columns), weighted by each row's share of the total; uniform weights when all are 0."""
    p = importance + _EPSILON
    p = p / p.sum(axis=1, keepdims=True)
    concentration = 1 + (p * np.log(p)).sum(axis=1) / np.log(importance.shape[1])
    total = importance.sum()
    weights = importance.sum(axis=1) / total if total > 0 else np.full(len(p), 1 / len(p))
    return float(np.sum(concentration * weights))
