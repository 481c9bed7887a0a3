"""What every data module shares: the loaders, and the seeded carving of splits."""

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, random_split

from betavae.data.in_memory import InMemoryBatches, split_tensors
from betavae.data.labelled import LabelledBatches, labelled_subset
from betavae.data.subsets import source_and_indices
from betavae.errors import UserError


class BaseDataModule(LightningDataModule, ABC):
    """Serves `train_set`, `val_set` and `test_set`, which a subclass's `setup` fills in.

    With `labels_per_class` (semi-supervised training) the training split is served as its
    `labelled_set`, that many examples per class chosen by `label_seed`, and the unlabelled
    rest: the training batches are the rest's, and each carries a batch of labelled examples
    beside it (`on_after_batch_transfer`).

    The ranges of the constructor arguments are checked by the config schema, where a user
    meets them first; a data module repeats a check only where a bad value would go unnoticed.
    """

    def __init__(
        self,
        batch_size: int,
        num_workers: int,
        exclude_classes: Sequence[int] = (),
        labels_per_class: int | None = None,
        label_seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.exclude_classes = list(exclude_classes)
        self.labels_per_class = labels_per_class
        self.label_seed = label_seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.labelled_set: Dataset | None = None
        self.unlabelled_set: Dataset | None = None
        self._train_batches: InMemoryBatches | DataLoader | None = None
        self._labelled_batches: LabelledBatches | None = None

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image; known before any data is read so the model can be built."""

    def _use_splits(self, train: Dataset, val: Dataset, test: Dataset) -> None:
        """Serve these splits less the examples of `exclude_classes` (to train on normal data).

        Classes are removed after splitting, so every other example is in the same split with
        or without an exclusion: scoring the held-out classes later never scores an example
        the model was trained on.
        """
        self.train_set, self.val_set, self.test_set = (
            without_classes(split, self.exclude_classes) for split in (train, val, test)
        )
        for name in ("train", "val", "test"):
            if self.exclude_classes and len(getattr(self, f"{name}_set")) == 0:  # type: ignore[arg-type]
                raise UserError(
                    f"data.exclude_classes={self.exclude_classes} leaves the {name} split "
                    "without examples; exclude fewer classes"
                )
        if self.labels_per_class is not None:
            self._set_labelled_apart(self.labels_per_class)

    def _set_labelled_apart(self, labels_per_class: int) -> None:
        """`labelled_set`: the chosen examples of the training split; `unlabelled_set`: the rest.
        Chosen as `betavae-eval labels_per_class=N label_seeds=[...]` chooses them, so an M2 run
        and the few-label probes of a VAE with the same seed learn from the same examples."""
        labels = class_labels(self.train_set)
        names = class_names(self.train_set)
        chosen = labelled_subset(
            labels, labels_per_class, self.label_seed, "data.labels_per_class", names
        )
        rest = torch.ones(len(labels), dtype=torch.bool)
        rest[chosen] = False
        self.labelled_set = Subset(self.train_set, chosen.tolist())
        self.unlabelled_set = Subset(self.train_set, rest.nonzero().flatten().tolist())

    def train_channel_means(self, max_images: int = 1000) -> Tensor:
        """(C,) the training split's mean intensity per channel, in [0, 1], from up to
        `max_images` images spread evenly over it: an estimate to start a model at (on the
        64×64 sprites a thousand images give it within 3%), read the same way from every
        kind of data set."""
        size = len(self.train_set)  # type: ignore[arg-type]
        picks = torch.linspace(0, size - 1, min(size, max_images)).long().tolist()
        images = torch.stack([self.train_set[i][0] for i in picks])  # type: ignore[index]
        return images.float().mean((0, 2, 3))

    @property
    def num_classes(self) -> int:
        """How many classes a classifier of this data tells apart (a class left out of
        training by `exclude_classes` included)."""
        return len(class_names(self.train_set))

    def labels_of(self, targets: Tensor) -> Tensor:
        """(B,) the class of each example of a batch, from what the data set gives beside each
        image: its label, unless a data set of generative factors says otherwise."""
        return targets

    def split_set(self, split: str) -> Dataset:
        """Split `train`, `val` or `test`, or `all` of them together (every example)."""
        if split == "all":
            return ConcatDataset([self.train_set, self.val_set, self.test_set])
        return getattr(self, f"{split}_set")

    def split_dataloader(self, split: str) -> InMemoryBatches | DataLoader:
        """The batches of a split (see `split_set`) in a fixed order, for evaluation."""
        return self._loader(self.split_set(split), shuffle=False)

    def train_dataloader(self) -> InMemoryBatches | DataLoader:
        if self.labelled_set is None:
            self._train_batches = self._loader(self.train_set, shuffle=True)
            return self._train_batches
        self._train_batches = self._loader(self.unlabelled_set, shuffle=True)
        self._labelled_batches = self._labelled_batches_on_device()
        return self._train_batches

    def _labelled_batches_on_device(self) -> LabelledBatches:
        """The labelled examples as whole tensors (a few per class: one read of each), on the
        training device, seeded like the training order."""
        labelled = self.labelled_set
        images, _ = next(iter(DataLoader(labelled, batch_size=len(labelled))))  # type: ignore[arg-type]
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        batches = LabelledBatches(images, class_labels(labelled), self.batch_size, seed)
        return batches.to(self.trainer.strategy.root_device)

    def val_dataloader(self) -> InMemoryBatches | DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> InMemoryBatches | DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count training batches as they are used, which is what a mid-epoch resume skips.

        In a semi-supervised run every batch becomes (images, targets, labels) and a training
        batch (images, targets, labels, labelled images, their labels), the labelled batch
        that of the optimizer step about to be taken (`LabelledBatches`)."""
        training = self.trainer.training
        if training and isinstance(self._train_batches, InMemoryBatches):
            self._train_batches.consumed += 1
        if self.labelled_set is None:
            return batch
        images, targets = batch
        batch = (images, targets, self.labels_of(targets))
        if training and self._labelled_batches is not None:
            trainer = self.trainer
            step, rank, world = trainer.global_step, trainer.global_rank, trainer.world_size
            batch += self._labelled_batches.batch(step, rank, world)
        return batch

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> InMemoryBatches | DataLoader:
        """The fast in-memory path where the split is whole tensors, else a DataLoader."""
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its data loaders")
        tensors = split_tensors(dataset)
        if tensors is not None:
            # The seed Lightning's own DistributedSampler uses: every DDP rank must draw the
            # same order to take disjoint shards of it.
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
            batches = InMemoryBatches(*tensors, self.batch_size, shuffle, seed)
            trainer = self.trainer
            if trainer is None:
                return batches
            return batches.shard(trainer.global_rank, trainer.world_size).to(
                trainer.strategy.root_device
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            # Re-spawning workers every epoch costs seconds per epoch on small data sets.
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )


class HeldOutTestDataModule(BaseDataModule):
    """A data set without an official test split: validation and test are carved out of the
    whole at random, by `split_seed` (the data module of a `_HeldOutTestConfig`)."""

    def __init__(
        self,
        batch_size: int,
        num_workers: int,
        val_fraction: float,
        test_fraction: float,
        split_seed: int,
        exclude_classes: Sequence[int],
        labels_per_class: int | None,
        label_seed: int,
    ) -> None:
        super().__init__(batch_size, num_workers, exclude_classes, labels_per_class, label_seed)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    def _use_whole(self, dataset: Dataset) -> None:
        """Serve `dataset` as train, val and test splits of the configured fractions."""
        fractions = [self.val_fraction, self.test_fraction]
        self._use_splits(*split_off(dataset, fractions, self.split_seed))


def split_off(dataset: Dataset, fractions: Sequence[float], seed: int) -> list[Subset]:
    """Return `[rest, *parts]`, each part holding `fraction` of `dataset`, chosen at random.

    The generator is private and seeded, so the same seed gives the same split in every
    process and every run, whatever the global random state is: a validation example
    never leaks into training when a run is resumed or repeated. A part asked for never
    rounds down to nothing, since an empty validation set would silently skip validation.
    """
    total = len(dataset)  # type: ignore[arg-type]
    sizes = [max(1, round(total * fraction)) if fraction > 0 else 0 for fraction in fractions]
    rest = total - sum(sizes)
    if rest < 1:
        raise UserError(
            f"only {total} examples, too few to hold out fractions {list(fractions)} and still "
            "train; add examples or lower data.val_fraction / data.test_fraction"
        )
    generator = torch.Generator().manual_seed(seed)
    return random_split(dataset, [rest, *sizes], generator=generator)


def class_labels(dataset: Dataset) -> Tensor | None:
    """(N,) int64 class of every example, read without loading images; None if it has none.

    Sprites give their shape (`class_labels`); torchvision's labelled sets and class folders
    give `targets`. A `Subset` (a carved split) takes its indices' labels.
    """
    source, indices = source_and_indices(dataset)
    labels = getattr(source, "class_labels", getattr(source, "targets", None))
    if labels is None:
        return None
    labels = torch.as_tensor(labels, dtype=torch.long)
    return labels if indices is None else labels[indices]


def without_classes(dataset: Dataset, classes: Sequence[int]) -> Dataset:
    """`dataset` less the examples whose class is in `classes` (itself when `classes` is empty)."""
    if not classes:
        return dataset
    labels = class_labels(dataset)
    if labels is None or labels.dim() != 1:
        raise UserError(
            f"data.exclude_classes={list(classes)}: this data set has no class labels to "
            "exclude by; remove the setting"
        )
    names = class_names(dataset)
    unknown = [c for c in classes if not 0 <= c < len(names)]
    if unknown:
        listed = ", ".join(f"{i} ({name})" for i, name in enumerate(names))
        raise UserError(
            f"data.exclude_classes={list(classes)}: there is no class {unknown[0]}; the classes "
            f"are {listed}"
        )
    keep = ~torch.isin(labels, torch.tensor(list(classes), dtype=torch.long))
    return Subset(dataset, keep.nonzero().flatten().tolist())


def class_names(dataset: Dataset) -> list[str]:
    """The name of each class id (torchvision's `classes`; the label itself where unnamed)."""
    source, _ = source_and_indices(dataset)
    names = getattr(source, "classes", None)
    if names is not None:
        return list(names)
    labels = class_labels(source)
    return [str(i) for i in range(int(labels.max()) + 1)] if labels is not None else []


def source_indices(dataset: Dataset) -> Tensor:
    """(N,) each example's index in the data set a split was carved from (a file's sorted
    position, a torchvision index, a row of a data set's file), so results can be traced back
    to the original example."""
    source, indices = source_and_indices(dataset)
    own = torch.arange(len(source)) if indices is None else indices  # type: ignore[arg-type]
    # A selection of a file's rows (data.num_examples of dSprites, ...) names its rows.
    rows = getattr(source, "file_rows", None)
    return own if rows is None else rows[own]
