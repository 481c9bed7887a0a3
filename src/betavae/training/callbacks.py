"""Callbacks a run always has: image grids in TensorBoard and the checkpoint pair."""

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig
from torch import Tensor
from torchvision.utils import make_grid

BEST_NAME = "best"
LAST_NAME = "last"


class ImageGridLogger(Callback):
    """Every few validation epochs, show inputs above their reconstructions, and prior samples.

    The same validation images and the same prior draws are used every time, so successive
    grids in TensorBoard show the model improving rather than different data.
    """

    def __init__(self, every_n_epochs: int, num_reconstructions: int, num_samples: int) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_reconstructions = num_reconstructions
        self.num_samples = num_samples
        self._inputs: Tensor | None = None
        self._prior_draws: Tensor | None = None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: tuple[Tensor, Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._inputs is None and batch_idx == 0:
            self._inputs = batch[0][: self.num_reconstructions].detach().clone()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch_due = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        tensorboard = _tensorboard(trainer)
        if trainer.sanity_checking or not epoch_due or self._inputs is None or tensorboard is None:
            return
        if not trainer.is_global_zero:
            return
        vae = pl_module.vae
        if self._prior_draws is None:
            generator = torch.Generator().manual_seed(0)
            self._prior_draws = torch.randn(self.num_samples, vae.latent_dim, generator=generator)
        with torch.no_grad():
            inputs = self._inputs.to(pl_module.device)
            reconstructions = vae.reconstruct(inputs).float()
            samples = vae.likelihood.mean(vae.decode(self._prior_draws.to(pl_module.device)))
        pairs = make_grid(torch.cat([inputs.float(), reconstructions]), nrow=len(inputs))
        grid = make_grid(samples.float(), nrow=int(self.num_samples**0.5))
        step = trainer.global_step
        tensorboard.experiment.add_image("val/reconstructions", pairs.clamp(0, 1).cpu(), step)
        tensorboard.experiment.add_image("val/samples", grid.clamp(0, 1).cpu(), step)


def _tensorboard(trainer: pl.Trainer) -> TensorBoardLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def build_callbacks(config: DictConfig, run_dir: Path, progress_bar: bool) -> list[Callback]:
    """The best checkpoint (by `val/elbo`) first, so `trainer.checkpoint_callback` is that one.

    Without the version counter the files keep their names (`best.ckpt`, `last.ckpt`) even in a
    run directory that was moved before being resumed, where Lightning would add `-v1`.
    """
    checkpoint_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(
        dirpath=checkpoint_dir,
        enable_version_counter=False,
        filename=BEST_NAME,
        monitor="val/elbo",
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    # The latest state as the one unmonitored top-1 checkpoint, rewritten at every epoch end:
    # Lightning 2.6 writes `save_last` files only alongside a top-k save (or at the end of
    # training), so with save_top_k=0 an interrupted run had no last.ckpt to resume from.
    last = ModelCheckpoint(
        dirpath=checkpoint_dir,
        enable_version_counter=False,
        filename=LAST_NAME,
        save_top_k=1,
        every_n_epochs=1,
        every_n_train_steps=config.checkpoint.every_n_train_steps,
    )
    images = config.images
    grids = ImageGridLogger(images.every_n_epochs, images.num_reconstructions, images.num_samples)
    bar = [TQDMProgressBar(refresh_rate=config.progress_bar.refresh_rate)] if progress_bar else []
    return [best, last, grids, *bar]
