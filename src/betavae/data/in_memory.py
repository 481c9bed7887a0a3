"""The fast data path: a whole split held as one tensor, batches cut by index slicing.

A small VAE trains faster than a DataLoader can hand it examples one `__getitem__` and one
collate at a time; here a batch is one gather from a float tensor on the training device.
"""

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets

from betavae.data.subsets import source_and_indices


class EpochOrder:
    """The examples one process visits in an epoch, in a seeded random order.

    The order is a pure function of (seed, epoch), so a resumed run sees the same batches as
    an uninterrupted one. Under DDP each rank takes every world_size-th example of the same
    order, padded like DistributedSampler so every rank has as many batches as the others.
    Lightning calls `set_epoch` on a loader's `sampler` at the start of every epoch.
    """

    def __init__(self, num_examples: int, shuffle: bool, seed: int) -> None:
        self.num_examples = num_examples
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank = 0
        self.world_size = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.world_size)

    def indices(self) -> Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_examples, generator=generator)
        else:
            order = torch.arange(self.num_examples)
        padding = len(self) * self.world_size - self.num_examples
        order = torch.cat([order, order[:padding]])
        return order[self.rank :: self.world_size]


class InMemoryBatches:
    """An iterable of `(images, targets)` batches that Lightning accepts like a DataLoader.

    The uint8 images are divided by `pixel_max` once, here, as torchvision's ToTensor does
    per example, so both paths give bit-identical floats in [0, 1]. Keeping uint8 and
    converting per batch would take a quarter of the memory, but measured 14x longer per
    batch than a float gather on a CPU.

    It is resumable mid-epoch: `consumed` counts the batches training actually used (the
    data module advances it), and a restored state skips exactly those, whatever Lightning
    had prefetched when the checkpoint was written.
    """

    # DataLoader's interface, which Lightning inspects: the order comes from `sampler`, and
    # there is no separate batch sampler.
    batch_sampler = None

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        pixel_max: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
    ) -> None:
        self.images = images.float().div_(pixel_max)
        self.targets = targets
        self.batch_size = batch_size
        self.sampler = EpochOrder(len(images), shuffle, seed)
        self.consumed = 0
        self._skip = 0

    def shard(self, rank: int, world_size: int) -> "InMemoryBatches":
        self.sampler.rank, self.sampler.world_size = rank, world_size
        return self

    def to(self, device: torch.device) -> "InMemoryBatches":
        self.images, self.targets = self.images.to(device), self.targets.to(device)
        return self

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.sampler.indices().to(self.images.device)
        self.consumed, self._skip = self._skip, 0
        for start in range(self.consumed * self.batch_size, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.targets[index]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._skip = state["consumed"]


def split_tensors(dataset: Dataset) -> tuple[Tensor, Tensor, int] | None:
    """(uint8 images (N, C, H, W), targets, pixel_max) of a split, if it is in memory.

    Data sets whose files are already whole arrays (sprites, MNIST, FashionMNIST, CIFAR10)
    qualify; ones that decode an image file per example (CelebA, image folders) do not, and
    keep the DataLoader path. A `Subset` (a carved split) is the gather of its indices.
    """
    source, indices = source_and_indices(dataset)
    whole = _whole_tensors(source)
    if whole is None or indices is None:
        return whole
    images, targets, pixel_max = whole
    return images[indices], targets[indices], pixel_max


def _whole_tensors(dataset: Dataset) -> tuple[Tensor, Tensor, int] | None:
    tensors = getattr(dataset, "tensors_uint8", None)
    if tensors is not None:
        return tensors()
    if isinstance(dataset, datasets.MNIST):  # FashionMNIST is a subclass
        return dataset.data.unsqueeze(1), dataset.targets, 255
    if isinstance(dataset, datasets.CIFAR10):
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        return images, torch.as_tensor(dataset.targets), 255
    return None
