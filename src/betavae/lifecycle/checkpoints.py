"""A run's checkpoints in one place: writing them (when, and whole or not at all) and reading
them back (which one a run continues from, and what it holds).

Writing. `best.ckpt` holds the epoch with the lowest validation ELBO; `last.ckpt` the latest
state to continue from: at every epoch end, every `every_n_train_steps` steps or
`every_n_minutes` minutes inside an epoch, and when the run is stopped by a signal (see
`stopping`). Lightning's ModelCheckpoint is not used: it writes the two files separately where
they hold the same state, and at moments a run cannot be continued exactly from.

Lightning restores a run exactly from a checkpoint written after a training batch inside an
epoch, or at the end of an epoch; one written after the last batch of an epoch but before that
epoch's end (or during validation) makes Lightning skip that epoch's validation and miscount
the epochs (measured with Lightning 2.6). So nothing is written there: the epoch-end
checkpoint follows a moment later.

Lightning's own file writer stages a checkpoint in the system's temporary directory and moves
it into place; across filesystems (a cluster's /tmp and its shared disk) that move is a copy,
so a process killed during it leaves a truncated checkpoint. Here each file is staged next to
its final name and renamed over the old one (`atomic_files`): the previous checkpoint stays
readable until the new one is complete.

Beside the weights, optimizer and loop counters that Lightning saves, each checkpoint holds
torch's random state (so the noise of the reparameterization continues as it would have) and
the last validation metrics (so a run resumed after its final epoch reports them without
validating again).

Reading. Checkpoints are loaded with `weights_only=True` (torch's default, safe for files from
others); a file that cannot be read is reported in one line, and a run continues from its
newest readable checkpoint.
"""

import math
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils._pytree import tree_map_only

from betavae.errors import UserError
from betavae.lifecycle.atomic_files import (
    fsync_directory,
    remove_staging_files,
    replace_atomically,
    staging_path,
)
from betavae.lifecycle.layout import (
    BEST_CHECKPOINT,
    BEST_NAME,
    LAST_CHECKPOINT,
    LAST_NAME,
    CheckpointFacts,
    require_checkpoint_file,
)
from betavae.lifecycle.signals import STOP_REQUESTS

# ---------------------------------------------------------------------------------- writing


def stage_metrics(metrics: dict[str, Any], stage: str) -> dict[str, float]:
    """The `stage/...` epoch metrics as floats, e.g. from `trainer.callback_metrics`."""
    return {name: float(value) for name, value in metrics.items() if name.startswith(f"{stage}/")}


def _random_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def remove_stale_staging_files(directory: Path) -> None:
    """Drop staging files a killed process left; they never replaced a checkpoint."""
    remove_staging_files(directory, "*.ckpt")


def link_atomically(source: Path, path: Path, durable: bool = True) -> None:
    """Make `path` the same file as `source` (a hard link) without a moment where it is absent.

    Used when two checkpoints hold the same state, so it is serialised once. Where the
    filesystem has no hard links, the bytes are copied instead.
    """
    staging = staging_path(path)
    staging.unlink(missing_ok=True)
    try:
        os.link(source, staging)
    except OSError:
        replace_atomically(path, lambda file: file.write(source.read_bytes()), durable)
        return
    os.replace(staging, path)
    if durable:
        fsync_directory(path.parent)


# The share of a run's time epoch-end checkpoints may take where epochs are short: a
# checkpoint every 100 times its own cost, so every second or so of a small MLP's training,
# which is also what a run killed by SIGKILL can lose.
CHECKPOINT_SHARE = 0.01
# A checkpoint is synced to disk when the last synced one is this old, or the run ends or
# stops: epoch-end checkpoints of short epochs, replaced within seconds, are not each synced
# (their fsync was most of their cost). A killed process loses nothing written either way.
DURABLE_EVERY_SECONDS = 60.0


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each file with `replace_atomically`;
    `storage_options={"durable": False}` leaves out the sync to disk."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        durable = (storage_options or {}).get("durable", True)
        replace_atomically(Path(path), lambda file: torch.save(checkpoint, file), durable)


class RunCheckpoints(Checkpoint):
    """Writes `best.ckpt` and `last.ckpt` into `directory`.

    When the best and the last checkpoint are written at the same moment they hold the same
    state, so the state is serialised once and `last.ckpt` becomes a hard link to it.
    `new_best`: the run starts from another run's checkpoint (`ckpt_path=`), whose best score
    this run's `best.ckpt` is not measured against.
    """

    def __init__(
        self,
        directory: Path,
        every_n_train_steps: int | None = None,
        every_n_minutes: float | None = None,
        new_best: bool = False,
    ) -> None:
        self.directory = directory
        self.every_n_train_steps = every_n_train_steps
        self.every_n_minutes = every_n_minutes
        self.new_best = new_best
        self.best_score: float | None = None
        self.val_metrics: dict[str, float] | None = None
        self._validated = False
        self._pending_random_state: dict[str, Any] | None = None
        self._last_saved_at = time.monotonic()
        self._synced_at = time.monotonic()
        # Epoch-end checkpoints: whether one was written in this process yet, what the last
        # took, and the best epoch's state while it waits to be written.
        self._saved_epoch_end = False
        self._epoch_end_cost = 0.0
        self._unwritten_best: dict[str, Any] | None = None
        # The step `last.ckpt` was last written at by this process: a stop can end the run
        # only where it holds the step the run is at.
        self.last_step: int | None = None

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
        if not self._epoch_end_due(trainer):
            if improved:  # written with the next checkpoint, or at the run's end or stop
                self._unwritten_best = _snapshot(trainer)
            return
        started = time.monotonic()
        durable = self._durable_now(trainer)
        if improved:
            self._unwritten_best = None
            self._save(trainer, self.best_path, durable)
            if trainer.is_global_zero:
                link_atomically(self.best_path, self.last_path, durable)
            trainer.strategy.barrier("RunCheckpoints.link")
            self.last_step = trainer.global_step
        else:
            self._write_unwritten_best(trainer, durable)
            self._save(trainer, self.last_path, durable)
        self._saved_epoch_end = True
        self._epoch_end_cost = time.monotonic() - started

    def save_last(self, trainer: pl.Trainer) -> None:
        """last.ckpt of the step the run is at, synced to disk (inside long epochs, at a stop)."""
        self._write_unwritten_best(trainer, durable=True)
        self._save(trainer, self.last_path, durable=True)

    def holds_step(self, trainer: pl.Trainer) -> bool:
        """Whether `last.ckpt`, as this process wrote it, continues the run from where it is."""
        return self.last_step == trainer.global_step

    def _epoch_end_due(self, trainer: pl.Trainer) -> bool:
        """Every epoch end where epochs take seconds; every few where they take a fraction of
        one, keeping the checkpoints' share of the run's time near `CHECKPOINT_SHARE`. Always the
        first in a process, the last epoch's, one before a stop, and every one under DDP (the
        ranks would otherwise decide by their own clocks)."""
        last_epoch = trainer.current_epoch + 1 >= trainer.max_epochs
        if not self._saved_epoch_end or last_epoch or trainer.world_size > 1:
            return True
        if STOP_REQUESTS.signum is not None:
            return True
        since = time.monotonic() - self._last_saved_at
        return since >= self._epoch_end_cost / CHECKPOINT_SHARE

    def _write_unwritten_best(self, trainer: pl.Trainer, durable: bool) -> None:
        if self._unwritten_best is None:
            return
        options = {"durable": durable}
        trainer.strategy.save_checkpoint(self._unwritten_best, self.best_path, options)
        self._unwritten_best = None

    def _durable_now(self, trainer: pl.Trainer) -> bool:
        last_epoch = trainer.current_epoch + 1 >= trainer.max_epochs
        stale = time.monotonic() - self._synced_at >= DURABLE_EVERY_SECONDS
        return last_epoch or stale or STOP_REQUESTS.signum is not None

    def _save(self, trainer: pl.Trainer, path: Path, durable: bool) -> None:
        trainer.save_checkpoint(path, weights_only=False, storage_options={"durable": durable})
        self._last_saved_at = time.monotonic()
        if path == self.last_path:
            self.last_step = trainer.global_step
        if durable:
            self._synced_at = self._last_saved_at

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "val_metrics": self.val_metrics,
            "random_state": _random_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self.new_best:
            self.best_score = state_dict["best_score"]
            self.val_metrics = state_dict["val_metrics"]
        self._pending_random_state = state_dict["random_state"]


def _snapshot(trainer: pl.Trainer) -> dict[str, Any]:
    """The checkpoint of the trainer's state now, its tensors copied, to write later.

    Lightning's own `dump_checkpoint`, as `trainer.save_checkpoint` uses it.
    """
    checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
    return tree_map_only(torch.Tensor, lambda tensor: tensor.detach().clone(), checkpoint)


def is_last_batch(trainer: pl.Trainer) -> bool:
    """Whether the training batch that just ended was the epoch's last."""
    return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


# ---------------------------------------------------------------------------------- reading


def read_checkpoint(path: Path, key: str) -> dict[str, Any]:
    """A checkpoint's contents, loaded on the CPU with `weights_only=True`; `key` names the
    setting that gave the path, for the one line that says it cannot be read."""
    require_checkpoint_file(path, key)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{key}={path}: not a readable checkpoint ({reason})") from error
    if not isinstance(checkpoint, dict) or "loops" not in checkpoint:
        raise UserError(f"{key}={path}: not a checkpoint of a Lightning training run")
    return checkpoint


def trained_epochs(checkpoint: dict[str, Any]) -> int:
    """How many epochs were trained to their end when the checkpoint was written.

    Lightning counts an epoch "processed" once its training and validation are done, and
    "completed" only after its end-of-epoch hooks, which is where `last.ckpt` is written: so a
    checkpoint written at the end of the third epoch says processed 3, completed 2.
    """
    return checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]


def checkpoint_facts(path: Path, key: str) -> CheckpointFacts:
    checkpoint = read_checkpoint(path, key)
    return CheckpointFacts(path, checkpoint["global_step"], trained_epochs(checkpoint))


def readable_checkpoints(run_dir: Path) -> tuple[list[CheckpointFacts], list[Path]]:
    """(the readable checkpoints of a run, last.ckpt first; the files that cannot be read)."""
    readable, unreadable = [], []
    for path in (run_dir / LAST_CHECKPOINT, run_dir / BEST_CHECKPOINT):
        if not path.is_file():
            continue
        try:
            readable.append(checkpoint_facts(path, "resume"))
        except UserError:
            unreadable.append(path)
    return readable, unreadable
