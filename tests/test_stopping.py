"""Where a stop request ends a run, with a real Trainer in this process and the signal handler
called as the operating system calls it, at moments a real signal hits only by chance (real
signals to real processes: test_interruptions, test_slurm)."""

import signal
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from betavae.data import SpritesDataModule
from betavae.lifecycle import checkpoints
from betavae.lifecycle.checkpoints import AtomicCheckpointIO, RunCheckpoints
from betavae.lifecycle.signals import HANDLED_SIGNALS, STOP_REQUESTS, RunStopped
from betavae.lifecycle.stopping import GracefulStop
from betavae.training.module import VAEModule


@pytest.fixture
def stop_requests() -> Iterator[None]:
    """The process's stop requests and signal handlers, as they were, after the test."""
    handlers = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    STOP_REQUESTS.signum, STOP_REQUESTS.immediate = None, True


class _SignalAtEpochStart(pl.Callback):
    """SIGTERM as epoch `epoch` starts: after the previous epoch's end hooks, which decided
    whether to write a checkpoint, and before GracefulStop looks for a request."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            STOP_REQUESTS._handle(signal.SIGTERM, None)


# Without a logger (none is needed here) Lightning warns at every `self.log`.
@pytest.mark.filterwarnings("ignore:You called `self.log")
def test_a_signal_after_a_skipped_epoch_end_checkpoint_stops_at_a_step_it_saved(
    tmp_path: Path, data_dir: Path, stop_requests: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Epoch-end checkpoints after the first only at the last epoch, as for short epochs whose
    # checkpoints would take more than their share of the run's time.
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SHARE", 1e-9)
    run_checkpoints = RunCheckpoints(tmp_path / "checkpoints")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=4,
        plugins=[AtomicCheckpointIO()],
        logger=False,
        callbacks=[
            _SignalAtEpochStart(epoch=2),
            GracefulStop(STOP_REQUESTS, run_checkpoints),
            run_checkpoints,
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    datamodule = SpritesDataModule(str(data_dir), num_examples=600, image_size=32, batch_size=64)
    module = VAEModule(image_shape=[1, 32, 32], latent_dim=4, hidden_dims=[64])

    with pytest.raises(RunStopped) as stopped:
        trainer.fit(module, datamodule=datamodule)

    # Not at the end of epoch 2, whose checkpoint was skipped: the run continues from the last
    # checkpoint, which holds the step the stop reports, one batch into epoch 3.
    saved = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    assert stopped.value.step == saved["global_step"] == 2 * trainer.num_training_batches + 1
