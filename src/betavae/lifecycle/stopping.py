"""Ending a training run at a signal, at a moment from which it can be continued exactly.

During training the run finishes the optimizer step in progress, writes `last.ckpt` of exactly
that step, logs it, and raises `RunStopped` before the next batch is trained. A signal during
the last batch of an epoch or during its validation lets the epoch end first (see
`checkpoints` for why), so its checkpoint is whole.
During the final test the run stops at once: the training's checkpoints are complete, and no
test result is written. Nothing marks the run finished; the app exits with 128 + the signal.
"""

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from betavae.lifecycle.checkpoints import RunCheckpoints, is_last_batch
from betavae.lifecycle.signals import RunStopped, StopRequests


class GracefulStop(Callback):
    """Turns a pending stop request into a checkpoint and `RunStopped` at a safe moment.

    Under DDP every rank must stop at the same step, so the ranks agree (an all-reduce of
    their requests) at each check; a single process only reads a flag, with no device sync.
    """

    def __init__(self, requests: StopRequests, checkpoints: RunCheckpoints) -> None:
        self.requests = requests
        self.checkpoints = checkpoints
        # The signal whose checkpoint has been saved, the run stopping at the next batch.
        self._saved_for: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.requests.training_started()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        signum = self._agreed_request(trainer)
        if signum and not is_last_batch(trainer):
            self.checkpoints.save_last(trainer)
            self._saved_for = signum

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, batch_idx: int
    ) -> None:
        # Stopping here, not where the checkpoint was saved: Lightning counts the batch as
        # completed after `on_train_batch_end`. Nothing has been trained since the checkpoint.
        if self._saved_for is not None:
            raise RunStopped(self._saved_for, trainer.global_step)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A stop that came late in the previous epoch: its end wrote last.ckpt. One that came
        # after that epoch-end checkpoint was skipped (`RunCheckpoints` writes one every few
        # short epochs) is saved at the next moment a checkpoint continues the run exactly:
        # after this epoch's first batch, or at its end.
        signum = self._agreed_request(trainer)
        if signum and self.checkpoints.holds_step(trainer):
            raise RunStopped(signum, trainer.global_step)

    def on_test_batch_end(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        self.requests.raise_if_requested(trainer.global_step)

    def _agreed_request(self, trainer: pl.Trainer) -> int:
        signum = self.requests.signum or 0
        if trainer.world_size == 1 or not dist.is_initialized():
            return signum
        agreed = torch.tensor([signum], device=trainer.strategy.root_device)
        dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
        return int(agreed.item())
