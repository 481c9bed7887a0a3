"""The few labelled examples of a semi-supervised setting, chosen from a labelled split.

Kingma et al. (2014) measure with N labels per class, the rest of the training split
unlabelled. Which N is a seeded, class-balanced draw, so a result names its labelled set by
(labels_per_class, seed), and several seeds show how much the choice itself matters.
"""

import torch
from torch import Tensor

from betavae.errors import UserError


def labelled_subset(labels: Tensor | None, labels_per_class: int, seed: int) -> Tensor:
    """Sorted indices into `labels` (N,) of `labels_per_class` examples of every class present.

    One seeded permutation of all examples orders every class at once, and each class takes
    its first `labels_per_class` in that order: the same (labels, seed) always give the same
    examples, and the set for N per class holds the set for any smaller N.
    """
    if labels is None or labels.dim() != 1 or len(labels) == 0:
        raise UserError(
            f"labels_per_class={labels_per_class}: this data set has no class labels to choose "
            "labelled examples by; use a labelled data set or remove the setting"
        )
    if labels_per_class < 1:
        raise UserError(f"labels_per_class={labels_per_class} is not allowed: an integer >= 1")
    classes, counts = labels.unique(return_counts=True)
    if counts.min() < labels_per_class:
        smallest = int(counts.argmin())
        raise UserError(
            f"labels_per_class={labels_per_class}: class {int(classes[smallest])} has only "
            f"{int(counts[smallest])} examples to choose from; use at most {int(counts.min())}"
        )
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    chosen = [order[shuffled == c][:labels_per_class] for c in classes]
    return torch.cat(chosen).sort().values
