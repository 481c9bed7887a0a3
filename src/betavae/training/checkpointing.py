"""A run's two checkpoints, `best.ckpt` and `last.ckpt`, and when they are written.

`best.ckpt` holds the epoch with the lowest validation ELBO; `last.ckpt` the latest state to
continue from: at every epoch end, every `every_n_train_steps` steps or `every_n_minutes`
minutes inside an epoch, and when the run is stopped by a signal (see `stopping`).

Lightning restores a run exactly from a checkpoint written after a training batch inside an
epoch, or at the end of an epoch; one written after the last batch of an epoch but before that
epoch's end (or during validation) makes Lightning skip that epoch's validation and miscount
the epochs (measured with Lightning 2.6). So nothing is written there: the epoch-end
checkpoint follows a moment later.

Beside the weights, optimizer and loop counters that Lightning saves, each checkpoint holds
torch's random state (so the noise of the reparameterization continues as it would have) and
the last validation metrics (so a run resumed after its final epoch reports them without
validating again).
"""

import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint

from betavae.training.checkpoint_io import link_atomically, remove_stale_staging_files
from betavae.training.run_dir import BEST_NAME, LAST_NAME

_STAGE_METRICS = ("elbo", "recon", "kl", "loss")


def stage_metrics(metrics: dict[str, Any], stage: str) -> dict[str, float]:
    """The `stage/...` epoch metrics as floats, e.g. from `trainer.callback_metrics`."""
    return {f"{stage}/{m}": float(metrics[f"{stage}/{m}"]) for m in _STAGE_METRICS}


def _random_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunCheckpoints(Checkpoint):
    """Writes `best.ckpt` and `last.ckpt` into `directory`.

    When the best and the last checkpoint are written at the same moment they hold the same
    state, so the state is serialised once and `last.ckpt` becomes a hard link to it.
    """

    def __init__(
        self,
        directory: Path,
        every_n_train_steps: int | None = None,
        every_n_minutes: float | None = None,
    ) -> None:
        self.directory = directory
        self.every_n_train_steps = every_n_train_steps
        self.every_n_minutes = every_n_minutes
        self.best_score: float | None = None
        self.val_metrics: dict[str, float] | None = None
        self._validated = False
        self._pending_random_state: dict[str, Any] | None = None
        self._last_saved_at = time.monotonic()

    @property
    def best_path(self) -> Path:
        return self.directory / BEST_NAME

    @property
    def last_path(self) -> Path:
        return self.directory / LAST_NAME

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero and self.directory.is_dir():
            remove_stale_staging_files(self.directory)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning's sanity check, which runs with its own random state.
        self._restore_random_state()
        self._last_saved_at = time.monotonic()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A run resumed after its last epoch trains nothing, but its test draws samples too.
        self._restore_random_state()

    def _restore_random_state(self) -> None:
        if self._pending_random_state is not None:
            _set_random_state(self._pending_random_state)
            self._pending_random_state = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.val_metrics = stage_metrics(trainer.callback_metrics, "val")
        self._validated = True

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if is_last_batch(trainer):
            return
        steps_due = self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0
        minutes_due = (
            self.every_n_minutes is not None
            and time.monotonic() - self._last_saved_at >= 60 * self.every_n_minutes
        )
        if steps_due or minutes_due:
            self.save_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning has run this epoch's validation (if any) by now.
        score = self.val_metrics["val/elbo"] if self._validated and self.val_metrics else None
        improved = (
            score is not None
            and math.isfinite(score)
            and (self.best_score is None or score < self.best_score)
        )
        if improved:
            self.best_score = score
            trainer.save_checkpoint(self.best_path, weights_only=False)
            if trainer.is_global_zero:
                link_atomically(self.best_path, self.last_path)
            trainer.strategy.barrier("RunCheckpoints.link")
            self._last_saved_at = time.monotonic()
        else:
            self.save_last(trainer)

    def save_last(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.last_path, weights_only=False)
        self._last_saved_at = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "val_metrics": self.val_metrics,
            "random_state": _random_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.val_metrics = state_dict["val_metrics"]
        self._pending_random_state = state_dict["random_state"]


def is_last_batch(trainer: pl.Trainer) -> bool:
    """Whether the training batch that just ended was the epoch's last."""
    return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
