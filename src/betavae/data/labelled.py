"""The few labelled examples of a semi-supervised setting, chosen from a labelled split, and
the batches of them that training draws.

Kingma et al. (2014) measure with N labels per class, the rest of the training split
unlabelled. Which N is a seeded, class-balanced draw, so a result names its labelled set by
(labels_per_class, seed), and several seeds show how much the choice itself matters.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from betavae.errors import UserError


def labelled_subset(
    labels: Tensor | None,
    labels_per_class: int,
    seed: int,
    key: str = "labels_per_class",
    class_names: Sequence[str] = (),
) -> Tensor:
    """Sorted indices into `labels` (N,) of `labels_per_class` examples of every class present.

    One seeded permutation of all examples orders every class at once, and each class takes
    its first `labels_per_class` in that order: the same (labels, seed) always give the same
    examples, and the set for N per class holds the set for any smaller N.
    """
    labels = check_labels_per_class(labels, labels_per_class, key, class_names)
    classes = labels.unique()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    chosen = [order[shuffled == c][:labels_per_class] for c in classes]
    return torch.cat(chosen).sort().values


def check_labels_per_class(
    labels: Tensor | None, labels_per_class: int, key: str, class_names: Sequence[str] = ()
) -> Tensor:
    """`labels`, if every class present has `labels_per_class` examples to choose; else one
    line naming `key`, the setting as the user typed it, and the short class by its name in
    `class_names` (an image folder's sub-folder, a sprite's shape) where it has one."""
    if labels is None or labels.dim() != 1 or len(labels) == 0:
        raise UserError(
            f"{key}={labels_per_class}: this data set has no class labels to choose "
            "labelled examples by; use a labelled data set or remove the setting"
        )
    if labels_per_class < 1:
        raise UserError(f"{key}={labels_per_class} is not allowed: an integer >= 1")
    classes, counts = labels.unique(return_counts=True)
    if counts.min() < labels_per_class:
        smallest = int(counts.argmin())
        label = int(classes[smallest])
        name = class_names[label] if label < len(class_names) else str(label)
        named = f"class {label}" if name == str(label) else f"class {label} ({name})"
        count = int(counts[smallest])
        examples = "example" if count == 1 else "examples"
        raise UserError(
            f"{key}={labels_per_class}: {named} has only {count} {examples} to choose from; "
            f"use at most {count}"
        )
    return labels


class LabelledBatches:
    """The labelled images of a semi-supervised run, a batch of them beside every training batch.

    With 10 labels per class among 16,000 images, batches drawn from the whole training split
    would hold a labelled image once in many steps. Kingma et al.'s code gives each unlabelled
    batch a labelled one, the labelled set cut into as many batches (so a fraction of an image
    each, here); this gives every step `batch_size` labelled images, all of them when there
    are fewer. The loss weighs the labelled and unlabelled means by their shares of the data
    (`semi_supervised_loss`), so the objective is Kingma et al.'s whatever the two batch sizes;
    a full labelled batch only makes its estimate less noisy.

    The labelled batch of optimizer step t is cut from a stream of seeded permutations of the
    labelled set: a function of (seed, t) alone, so a resumed run draws what an uninterrupted
    one drew. Under DDP rank r of w takes the (t·w + r)-th batch of the stream.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, seed: int) -> None:
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.seed = seed

    def to(self, device: torch.device) -> "LabelledBatches":
        self.images, self.labels = self.images.to(device), self.labels.to(device)
        return self

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> tuple[Tensor, Tensor]:
        """(images, labels) for optimizer step `step` on DDP rank `rank` of `world_size`."""
        count = len(self.labels)
        if count <= self.batch_size:
            return self.images, self.labels
        start = (step * world_size + rank) * self.batch_size
        positions = torch.arange(start, start + self.batch_size)
        passes = positions // count
        index = torch.empty(self.batch_size, dtype=torch.long)
        for one_pass in passes.unique().tolist():
            here = passes == one_pass
            generator = torch.Generator().manual_seed(self.seed + one_pass)
            index[here] = torch.randperm(count, generator=generator)[positions[here] % count]
        index = index.to(self.images.device)
        return self.images[index], self.labels[index]
