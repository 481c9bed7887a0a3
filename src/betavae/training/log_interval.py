"""How often training curves get a point when `trainer.log_every_n_steps` is not set: from the
length of the whole run, so that a run has about `POINTS_PER_RUN` points whatever its epochs
(Lightning's fixed 50 steps gave a job of 39 steps none at all, and a point at every step of
short epochs made logging a tenth of a small run's time)."""

import math

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

POINTS_PER_RUN = 100
# No longer an interval than Lightning's default: each point costs a host-device sync.
MAX_INTERVAL = 50


def log_interval(total_steps: float) -> int:
    """Steps between two points of the `train/*` curves of a run of `total_steps`."""
    if not math.isfinite(total_steps):
        return MAX_INTERVAL
    return max(1, min(MAX_INTERVAL, int(total_steps) // POINTS_PER_RUN))


class LogInterval(Callback):
    """Sets `trainer.log_every_n_steps` once Lightning knows the run's steps (after its DDP
    sharding and `limit_train_batches`), before the first training step."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Until then an interval no epoch is shorter than, so that Lightning does not warn that
        # the epoch is shorter than its default interval.
        trainer.log_every_n_steps = 1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.log_every_n_steps = log_interval(trainer.estimated_stepping_batches)
