"""M1 of Kingma et al. (2014): the VAE learns from every image, a classifier from a few labels.

The probes of `representation` are fitted on N labelled training examples per class, once
on their μ and once on their raw pixels. The pixels are the baseline: only where μ beats
them with the same N did learning from the unlabelled images help. A few labels are a noisy
sample, so each N is drawn with several seeds and reported as mean and sd.

Both read their features in their own units, not standardized: pixels in [0, 1], as a
nearest-neighbour baseline on images is usually run, and μ in the prior's, N(0, I), of its
active dimensions only. Standardizing by a few labelled examples per class rescales each
dimension by the spread of a handful of values: a pixel they happen not to cover is blown up a
millionfold (on 64x64 sprites at 10 per class that cost the pixels' k-NN 0.03), and a
collapsed latent dimension, which carries nothing a decoder could use, is given as much weight
as an informative one.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from betavae.data.labelled import labelled_subset
from betavae.evaluation.representation import active_units, knn_accuracy, linear_probe_accuracy

# The vote of `probe_metrics`' k-NN; with fewer labelled examples per class than this, k
# shrinks to their number, since a larger k outvotes a class with examples of the others.
KNN_NEIGHBOURS = 5


def few_label_probe_metrics(
    train_mu: Tensor,
    train_images: Tensor,
    train_labels: Tensor,
    mu: Tensor,
    images: Tensor,
    labels: Tensor,
    labels_per_class: int,
    seeds: Sequence[int],
) -> dict[str, float | int | list[int]]:
    """Accuracy on (`mu`, `images`, `labels`) of the linear probe and the k-NN, fitted on
    `labels_per_class` training examples per class (`labelled_subset` of each seed).

    Keys: `labels_per_class`, `label_seeds`, `few_label_mu_dims` (the active dimensions of the
    training split's μ, which the probes read), and `few_label_{mu,pixels}_{linear_probe,knn}_
    accuracy_{mean,sd}` (sd over seeds, n − 1 in the denominator, so at least two seeds).
    """
    if len(seeds) < 2:
        raise ValueError(f"a standard deviation over seeds needs at least two, got {list(seeds)}")
    k = min(KNN_NEIGHBOURS, labels_per_class)
    active = active_units(train_mu)
    features = {
        "mu": (train_mu[:, active], mu[:, active]),
        "pixels": (train_images.flatten(1), images.flatten(1)),
    }
    accuracies: dict[str, list[float]] = {}
    for seed in seeds:
        chosen = labelled_subset(train_labels, labels_per_class, seed)
        for name, (train, test) in features.items():
            fitted = (train[chosen], train_labels[chosen], test, labels)
            accuracies.setdefault(f"few_label_{name}_linear_probe_accuracy", []).append(
                linear_probe_accuracy(*fitted, standardized=False)
            )
            accuracies.setdefault(f"few_label_{name}_knn_accuracy", []).append(
                knn_accuracy(*fitted, k=k, standardized=False)
            )
    metrics: dict[str, float | int | list[int]] = {
        "labels_per_class": labels_per_class,
        "label_seeds": list(seeds),
        "few_label_mu_dims": int(active.sum()),
    }
    for key, values in accuracies.items():
        per_seed = torch.tensor(values, dtype=torch.float64)
        metrics[f"{key}_mean"] = per_seed.mean().item()
        metrics[f"{key}_sd"] = per_seed.std().item()
    return metrics
