"""The progress bar a terminal shows: epochs counted as the epoch lines count them, and gone
when a signal stops the run, so that what is said about the stop has lines of its own."""

import signal

import lightning.pytorch as pl
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from betavae.lifecycle.signals import STOP_REQUESTS
from betavae.training.callbacks import EpochProgressBar


class _Model(BoringModel):
    """Lightning's model for tests, with the latest training loss a VAEModule keeps."""

    last_train_loss = 1.5


class _StopRequestedAt(pl.Callback):
    """Records a stop request at a training step, as the SIGTERM handler would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            STOP_REQUESTS.signum = signal.SIGTERM


def _trainer(tmp_path, *callbacks: pl.Callback) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=2,
        limit_train_batches=5,
        limit_val_batches=2,
        callbacks=list(callbacks),
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


def test_the_bar_counts_epochs_from_one_of_all(tmp_path):
    bar = EpochProgressBar()

    _trainer(tmp_path, bar).fit(_Model())

    assert bar.train_progress_bar.desc.startswith("Epoch 2/2")
    assert bar.train_progress_bar.postfix == "train/loss=1.5"


@pytest.fixture
def stop_requests():
    yield STOP_REQUESTS
    STOP_REQUESTS.signum = None


def test_a_stop_request_clears_the_bar_before_the_stop_is_reported(tmp_path, stop_requests):
    bar = EpochProgressBar()

    _trainer(tmp_path, bar, _StopRequestedAt(step=3)).fit(_Model())

    # Cleared (no line left behind) at the step the request came, and drawn no more.
    assert bar.train_progress_bar.disable
    assert not bar.train_progress_bar.leave
