"""Callbacks a run always has: image grids and traversals in TensorBoard, a progress bar."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig
from torch import Tensor
from torchvision.utils import make_grid

from betavae.evaluation.pictures import traversal
from betavae.vae import VAE, kl_standard_normal

# Validation images whose mean KL per dimension orders a traversal's rows.
TRAVERSAL_KL_INPUTS = 64


class _ValidationImageLogger(Callback):
    """Every `every_n_epochs` validation epochs, log pictures made from the same validation
    inputs (the first of the first batch), so successive images in TensorBoard show the model
    changing rather than different data."""

    def __init__(self, every_n_epochs: int, num_inputs: int) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_inputs = num_inputs
        self._inputs: Tensor | None = None

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
            self._inputs = batch[0][: self.num_inputs].detach().clone()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch_due = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        tensorboard = _tensorboard(trainer)
        if trainer.sanity_checking or not epoch_due or self._inputs is None or tensorboard is None:
            return
        if not trainer.is_global_zero:
            return
        with torch.no_grad():
            images = self.images(pl_module.vae, self._inputs.to(pl_module.device))
        for tag, grid in images.items():
            tensorboard.experiment.add_image(tag, grid.clamp(0, 1).cpu(), trainer.global_step)

    def images(self, vae: VAE, inputs: Tensor) -> dict[str, Tensor]:
        """TensorBoard tag -> image grid (C, H, W) to log."""
        raise NotImplementedError


class ImageGridLogger(_ValidationImageLogger):
    """Inputs above their reconstructions, and samples from the same prior draws each time."""

    def __init__(self, every_n_epochs: int, num_reconstructions: int, num_samples: int) -> None:
        super().__init__(every_n_epochs, num_reconstructions)
        self.num_samples = num_samples
        self._prior_draws: Tensor | None = None

    def images(self, vae: VAE, inputs: Tensor) -> dict[str, Tensor]:
        if self._prior_draws is None:
            generator = torch.Generator().manual_seed(0)
            self._prior_draws = torch.randn(self.num_samples, vae.latent_dim, generator=generator)
        reconstructions = vae.reconstruct(inputs).float()
        samples = vae.likelihood.mean(vae.decode(self._prior_draws.to(inputs.device)))
        pairs = make_grid(torch.cat([inputs.float(), reconstructions]), nrow=len(inputs))
        grid = make_grid(samples.float(), nrow=int(self.num_samples**0.5))
        return {"val/reconstructions": pairs, "val/samples": grid}


class TraversalLogger(_ValidationImageLogger):
    """A latent traversal of the first validation image: one row per dimension, most KL first
    (KL averaged over the first validation batch), to watch what each dimension comes to mean."""

    def __init__(self, every_n_epochs: int, span: float, steps: int) -> None:
        super().__init__(every_n_epochs, num_inputs=TRAVERSAL_KL_INPUTS)
        self.span = span
        self.steps = steps

    def images(self, vae: VAE, inputs: Tensor) -> dict[str, Tensor]:
        mu, logvar = vae.encode(inputs)
        order = kl_standard_normal(mu, logvar).mean(0).argsort(descending=True)
        rows = traversal(vae, mu[0], order, self.span, self.steps)
        return {"val/traversal": make_grid(rows, nrow=self.steps)}


def _tensorboard(trainer: pl.Trainer) -> TensorBoardLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def build_callbacks(config: DictConfig, progress_bar: bool) -> list[Callback]:
    """The picture loggers and the progress bar; checkpoints are `checkpointing.RunCheckpoints`."""
    images = config.images
    grids = ImageGridLogger(images.every_n_epochs, images.num_reconstructions, images.num_samples)
    bar = [TQDMProgressBar(refresh_rate=config.progress_bar.refresh_rate)] if progress_bar else []
    walks = config.traversals
    traversals = TraversalLogger(walks.every_n_epochs, walks.span, walks.steps)
    return [grids, traversals, *bar]
