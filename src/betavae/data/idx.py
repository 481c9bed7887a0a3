"""Writing images in the idx format that torchvision's MNIST and FashionMNIST read.

With no network, this is how MNIST-format data sets are made here: the tests and the
benchmark render sprites and store them exactly where `data=mnist` looks for the real files.
"""

import struct
from pathlib import Path

from torch import Tensor

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def write_idx(path: Path, magic: int, array: Tensor) -> None:
    """One big-endian idx file: magic number, each dimension's size, then the raw uint8 data."""
    header = struct.pack(">i", magic) + b"".join(struct.pack(">i", n) for n in array.shape)
    path.write_bytes(header + array.numpy().tobytes())


def write_mnist_raw(
    raw_dir: Path, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]
) -> None:
    """Write (images uint8 (N, 28, 28), labels uint8 (N,)) pairs under torchvision's file names."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(raw_dir / f"{prefix}-images-idx3-ubyte", IMAGES_MAGIC, images)
        write_idx(raw_dir / f"{prefix}-labels-idx1-ubyte", LABELS_MAGIC, labels)
