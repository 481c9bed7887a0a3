"""How much the latent space holds: active units, and how well μ predicts a label.

The probes are the usual representation-learning read-outs: a linear classifier and a k-NN
vote, both fitted on the training split's μ and scored on another split's μ.
"""

import torch
from torch import Tensor

# A unit is active when its posterior mean moves with the input: Cov_x(E_q[z_d]) above this
# (Burda et al. 2016). Inactive units have collapsed to the prior and carry no information.
ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(mu: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> Tensor:
    """(D,) bool: which latent dimensions are active over the examples `mu` (N, D)."""
    return mu.double().var(dim=0) > threshold


def standardize(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    """Scale both by the training statistics, so inactive (tiny) dims do not dominate or vanish."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def _features(train: Tensor, test: Tensor, standardized: bool) -> tuple[Tensor, Tensor]:
    return standardize(train, test) if standardized else (train, test)


def linear_probe_accuracy(
    train_mu: Tensor,
    train_labels: Tensor,
    test_mu: Tensor,
    test_labels: Tensor,
    steps: int = 100,
    standardized: bool = True,
) -> float:
    """Accuracy of multinomial logistic regression (L-BFGS, a little L2) fitted on the train μ
    (`standardize`d by its statistics, unless `standardized` is false)."""
    train_x, test_x = _features(train_mu.double(), test_mu.double(), standardized)
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = torch.zeros(train_x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = train_x @ weight + bias
        loss = torch.nn.functional.cross_entropy(logits, train_labels) + 1e-4 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predictions = (test_x @ weight + bias).argmax(1)
    return (predictions == test_labels).double().mean().item()


def knn_accuracy(
    train_mu: Tensor,
    train_labels: Tensor,
    test_mu: Tensor,
    test_labels: Tensor,
    k: int = 5,
    standardized: bool = True,
) -> float:
    """Accuracy of a majority vote among the k nearest training μ (Euclidean; `standardize`d
    unless `standardized` is false)."""
    train_x, test_x = _features(train_mu.float(), test_mu.float(), standardized)
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    _, nearest = nearest_neighbours(train_x, test_x, k)
    votes = torch.nn.functional.one_hot(train_labels[nearest], classes).sum(1)
    return (votes.argmax(1) == test_labels).double().mean().item()


def nearest_neighbours(train_x: Tensor, test_x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(distances, indices), each (N, k): the k nearest rows of `train_x` to each row of
    `test_x` (Euclidean), nearest first; the distance matrix is built 1024 rows at a time."""
    found = [
        torch.cdist(test_x[start : start + 1024], train_x).topk(min(k, len(train_x)), largest=False)
        for start in range(0, len(test_x), 1024)
    ]
    return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])
