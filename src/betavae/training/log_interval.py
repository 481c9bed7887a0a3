"""How often training curves get a point when `trainer.log_every_n_steps` is not set: from the
length of an epoch, so that a short run has curves too (Lightning's fixed 50 steps gave a job of
39 steps none at all)."""

import math

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

# At least this many points per epoch, unless an epoch has fewer steps ...
POINTS_PER_EPOCH = 10
# ... and no longer an interval than Lightning's default: each point costs a host-device sync.
MAX_INTERVAL = 50


def log_interval(steps_per_epoch: float) -> int:
    """Steps between two points of the `train/*` curves."""
    if not math.isfinite(steps_per_epoch):
        return MAX_INTERVAL
    return max(1, min(MAX_INTERVAL, int(steps_per_epoch) // POINTS_PER_EPOCH))


class LogInterval(Callback):
    """Sets `trainer.log_every_n_steps` once Lightning knows the batches per epoch (after its
    DDP sharding and `limit_train_batches`), before the first training step."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Until then an interval no epoch is shorter than, so that Lightning does not warn that
        # the epoch is shorter than its default interval.
        trainer.log_every_n_steps = 1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.log_every_n_steps = log_interval(trainer.num_training_batches)
