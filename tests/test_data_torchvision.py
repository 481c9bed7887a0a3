"""torchvision data sets, read from files written here in torchvision's own on-disk formats.

MNIST and FashionMNIST only need their idx files to exist, so tiny ones are written and read
back. CIFAR10 and CelebA check the MD5 sums of the real files, which no made-up file can
match, so for them only the messages and shapes are tested.
"""

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from betavae.data import (
    CelebADataModule,
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
)
from betavae.data.idx import write_mnist_raw
from betavae.data.torchvision_sets import TorchvisionDataModule
from betavae.errors import UserError


def write_mnist_files(raw_dir: Path, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Write 60 training and 20 test images in idx format; return what was written."""
    generator = torch.Generator().manual_seed(seed)
    written = {}
    for prefix, count in (("train", 60), ("t10k", 20)):
        images = torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 10, (count,), dtype=torch.uint8, generator=generator)
        written[prefix] = (images, labels)
    write_mnist_raw(raw_dir, train=written["train"], test=written["t10k"])
    return written


@pytest.mark.parametrize(
    ("module_class", "folder"),
    [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")],
)
def test_mnist_like_files_are_read_and_split(
    tmp_path: Path, module_class: type[TorchvisionDataModule], folder: str
) -> None:
    written = write_mnist_files(tmp_path / folder / "raw", seed=len(folder))
    module = module_class(str(tmp_path), batch_size=16, num_workers=0, val_fraction=0.25)
    assert module.image_shape == (1, 28, 28)
    module.prepare_data()
    module.setup("fit")
    assert (len(module.train_set), len(module.val_set), len(module.test_set)) == (45, 15, 20)
    assert set(module.train_set.indices).isdisjoint(module.val_set.indices)

    train_images, train_labels = written["train"]
    for subset in (module.train_set, module.val_set):
        for position in (0, len(subset) - 1):
            image, label = subset[position]
            original = subset.indices[position]
            assert torch.allclose(image[0], train_images[original].float() / 255)
            assert label == train_labels[original].item()

    test_images, test_labels = written["t10k"]
    images, labels = next(iter(module.test_dataloader()))
    assert images.shape == (16, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert torch.allclose(images[:, 0], test_images[:16].float() / 255)
    assert torch.equal(labels, test_labels[:16].long())


def test_validation_split_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    write_mnist_files(tmp_path / "MNIST" / "raw", seed=0)
    modules = [MNISTDataModule(str(tmp_path), split_seed=seed) for seed in (7, 7, 8)]
    for module in modules:
        module.setup("fit")
    same, again, other = (module.val_set.indices for module in modules)
    assert same == again and same != other


@pytest.mark.parametrize(
    ("module_class", "files_dir"),
    [
        (MNISTDataModule, "MNIST/raw"),
        (FashionMNISTDataModule, "FashionMNIST/raw"),
        (CIFAR10DataModule, "cifar-10-batches-py"),
        (CelebADataModule, "celeba"),
    ],
)
def test_missing_files_name_the_folder_and_the_download_switch(
    tmp_path: Path, module_class: type[TorchvisionDataModule], files_dir: str
) -> None:
    module = module_class(str(tmp_path))
    module.prepare_data()  # download=false: nothing to fetch, nothing to complain about yet
    with pytest.raises(UserError) as caught:
        module.setup("fit")
    message = str(caught.value)
    assert f"not found under {tmp_path / files_dir};" in message
    assert "data.download=true" in message
    assert "\n" not in message


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Send every HTTP(S) request to a closed local port, so downloads fail at once."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # urlopen keeps the opener it built first; a fresh one reads the proxies set above.
    urllib.request.install_opener(urllib.request.build_opener())
    yield
    urllib.request.install_opener(None)


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(
    ("module_class", "files_dir"),
    [(MNISTDataModule, "MNIST/raw"), (CIFAR10DataModule, "cifar-10-batches-py")],
)
def test_failed_download_is_one_line_naming_folder_and_reason(
    tmp_path: Path, module_class: type[TorchvisionDataModule], files_dir: str
) -> None:
    data_dir = tmp_path / "data"
    module = module_class(str(data_dir), download=True)
    with pytest.raises(UserError) as caught:
        module.prepare_data()
    message = str(caught.value)
    assert message.startswith(f"could not download {module.dataset_name} into ")
    assert f"into {data_dir / files_dir} (" in message
    assert "Connection refused" in message
    assert "\n" not in message
    assert not data_dir.exists()  # the folders torchvision made for the files are gone


@pytest.mark.usefixtures("offline")
def test_a_failed_download_leaves_the_files_already_there(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST/raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"fetched by hand")

    with pytest.raises(UserError):
        MNISTDataModule(str(tmp_path), download=True).prepare_data()

    assert [p.name for p in raw.iterdir()] == ["train-images-idx3-ubyte.gz"]


def test_shapes_are_known_before_any_file_exists(tmp_path: Path) -> None:
    assert CIFAR10DataModule(str(tmp_path)).image_shape == (3, 32, 32)
    assert CelebADataModule(str(tmp_path)).image_shape == (3, 64, 64)
    assert CelebADataModule(str(tmp_path), image_size=32).image_shape == (3, 32, 32)
