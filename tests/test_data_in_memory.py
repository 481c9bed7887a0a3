"""The in-memory fast path serves the same data as the DataLoader path, sharded and resumable."""

import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torchvision import datasets, transforms

from betavae.data import MNISTDataModule, SpritesDataModule
from betavae.data.idx import write_mnist_raw
from betavae.data.in_memory import InMemoryBatches, split_tensors


def _batches(count: int, batch_size: int = 8, shuffle: bool = True) -> InMemoryBatches:
    images = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1)
    return InMemoryBatches(images, torch.arange(count), 1, batch_size, shuffle, seed=3)


def _targets(batches) -> list[int]:
    return torch.cat([targets for _, targets in batches]).tolist()


def test_mnist_tensors_equal_what_torchvision_to_tensor_gives(tmp_path):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (30, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (30,), dtype=torch.uint8, generator=generator)
    write_mnist_raw(tmp_path / "MNIST" / "raw", train=(images, labels), test=(images, labels))
    module = MNISTDataModule(str(tmp_path), batch_size=5, num_workers=0, val_fraction=0.2)
    module.setup("fit")

    served_images, served_labels = next(iter(module.val_dataloader()))
    expected = [module.val_set[i] for i in range(5)]

    assert isinstance(module.val_dataloader(), InMemoryBatches)
    assert torch.equal(served_images, torch.stack([image for image, _ in expected]))
    assert served_labels.tolist() == [label for _, label in expected]


def test_cifar10_arrays_become_channel_first_tensors_like_to_tensor():
    cifar = datasets.CIFAR10.__new__(datasets.CIFAR10)  # no files: only the arrays matter here
    cifar.data = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    cifar.targets = [3, 1, 4, 1]

    images, targets, pixel_max = split_tensors(cifar)

    for i in range(4):
        assert torch.equal(images[i].float() / pixel_max, transforms.ToTensor()(cifar.data[i]))
    assert targets.tolist() == cifar.targets


def test_every_epoch_visits_each_example_once_in_a_seeded_order():
    batches = _batches(50)
    first = _targets(batches)
    batches.sampler.set_epoch(1)
    second = _targets(batches)
    again = _batches(50)
    again.sampler.set_epoch(1)

    assert sorted(first) == sorted(second) == list(range(50))
    assert first != second
    assert _targets(again) == second
    assert len(batches) == 7


def test_ddp_ranks_take_disjoint_equal_shards_of_the_same_order():
    ranks = [_batches(51).shard(rank, 2) for rank in (0, 1)]
    shards = [_targets(batches) for batches in ranks]

    assert len(ranks[0]) == len(ranks[1])
    assert len(shards[0]) == len(shards[1]) == 26  # 51 padded to 52 like DistributedSampler
    assert set(shards[0]) | set(shards[1]) == set(range(51))
    assert len(set(shards[0]) & set(shards[1])) == 1  # only the padding repeats


def test_restored_state_skips_exactly_the_consumed_batches():
    interrupted = _batches(50)
    interrupted.sampler.set_epoch(4)
    iterator = iter(interrupted)
    used = [next(iterator) for _ in range(3)]
    interrupted.consumed = 3  # what the data module counts as training uses batches
    next(iterator)  # prefetched, never trained on
    resumed = _batches(50)
    resumed.load_state_dict(interrupted.state_dict())

    assert _targets(used) + _targets(resumed) == _targets(_batches_at_epoch(4))


def _batches_at_epoch(epoch: int) -> InMemoryBatches:
    batches = _batches(50)
    batches.sampler.set_epoch(epoch)
    return batches


class _Recorder(pl.LightningModule):
    """Remembers the factors of every training example it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[Tensor] = []

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        self.seen.append(batch[1])
        return (self.weight - batch[0].mean()) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(
    module: SpritesDataModule, ckpt_path: Path | None, callbacks: list[pl.Callback], root: Path
) -> _Recorder:
    recorder = _Recorder()
    trainer = pl.Trainer(
        default_root_dir=root,
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        # The module has no validation step, and the resumed fit leaves the checkpoint callback
        # out: both on purpose here, and Lightning warns of each.
        warnings.filterwarnings("ignore", "You passed in a `val_dataloader`")
        warnings.filterwarnings("ignore", "Be aware that when using `ckpt_path`")
        trainer.fit(recorder, datamodule=module, ckpt_path=ckpt_path)
    return recorder


def test_lightning_resumes_mid_epoch_without_repeating_or_skipping_examples(tmp_path):
    def sprites() -> SpritesDataModule:
        return SpritesDataModule(str(tmp_path), num_examples=200, image_size=16, batch_size=16)

    checkpoints = tmp_path / "every_4_steps"
    every_4_steps = ModelCheckpoint(checkpoints, "{step}", every_n_train_steps=4, save_top_k=-1)
    whole = _fit(sprites(), None, [every_4_steps], tmp_path)
    resumed = _fit(sprites(), checkpoints / "step=4.ckpt", [], tmp_path)

    assert len(whole.seen) == 10  # 160 training examples (200 less 10% val, 10% test) by 16
    assert torch.equal(torch.cat(whole.seen[:4] + resumed.seen), torch.cat(whole.seen))
