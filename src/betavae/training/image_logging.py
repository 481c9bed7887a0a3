"""Pictures of the model in TensorBoard after validation epochs: reconstructions, samples and a
latent traversal, each from the same inputs or draws every time, so the images show the model
changing rather than different data.
"""

from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from betavae.evaluation.pictures import grid, traversal, traversal_labels
from betavae.training.tensorboard import RunLogger
from betavae.vae import VAE, kl_standard_normal

# Validation images whose mean KL per dimension orders and labels a traversal's rows.
TRAVERSAL_KL_INPUTS = 64


class _ValidationImageLogger(Callback):
    """Every `every_n_epochs` validation epochs and after the last one, log pictures made from
    the first validation inputs, at the step of that validation's scalars."""

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
        logger = next((lg for lg in trainer.loggers if isinstance(lg, RunLogger)), None)
        if trainer.sanity_checking or self._inputs is None or logger is None:
            return
        if not trainer.is_global_zero or not self._due(trainer):
            return
        with torch.no_grad():
            pictures = self.pictures(pl_module.vae, self._inputs.to(pl_module.device))
        for tag, picture in pictures.items():
            logger.log_image(tag, picture, logged_step(trainer))

    def _due(self, trainer: pl.Trainer) -> bool:
        epochs_done = trainer.current_epoch + 1
        return epochs_done % self.every_n_epochs == 0 or epochs_done >= trainer.max_epochs

    def pictures(self, vae: VAE, inputs: Tensor) -> dict[str, Tensor]:
        """TensorBoard tag -> picture (3, H, W) in [0, 1] to log."""
        raise NotImplementedError


def logged_step(trainer: pl.Trainer) -> int:
    """The step Lightning logs the epoch's scalars (val/elbo, ...) at: its count of batches that
    stepped, one behind `trainer.global_step` at the end of a training epoch."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


class ImageGridLogger(_ValidationImageLogger):
    """Inputs above their reconstructions, and samples from the same prior draws each time."""

    def __init__(self, every_n_epochs: int, num_reconstructions: int, num_samples: int) -> None:
        super().__init__(every_n_epochs, num_reconstructions)
        self.num_samples = num_samples
        self._prior_draws: Tensor | None = None

    def pictures(self, vae: VAE, inputs: Tensor) -> dict[str, Tensor]:
        if self._prior_draws is None:
            generator = torch.Generator().manual_seed(0)
            self._prior_draws = torch.randn(self.num_samples, vae.latent_dim, generator=generator)
        reconstructions = vae.reconstruct(inputs)
        samples = vae.likelihood.mean(vae.decode(self._prior_draws.to(inputs.device)))
        pairs = torch.cat([inputs.float(), reconstructions.float()])
        return {
            "val/reconstructions": grid(pairs, len(inputs), ["input", "reconstruction"]),
            "val/samples": grid(samples, int(self.num_samples**0.5)),
        }


class TraversalLogger(_ValidationImageLogger):
    """A latent traversal of the first validation image: one row per dimension, most KL first
    (KL averaged over the first validation batch), to watch what each dimension comes to mean."""

    def __init__(
        self,
        every_n_epochs: int,
        span: float,
        steps: int,
        factors: Callable[[], Sequence[str | None]] = tuple,
    ) -> None:
        """`factors()`: the factor each dimension follows now, for the row labels (empty
        without generative factors)."""
        super().__init__(every_n_epochs, num_inputs=TRAVERSAL_KL_INPUTS)
        self.span = span
        self.steps = steps
        self.factors = factors

    def pictures(self, vae: VAE, inputs: Tensor) -> dict[str, Tensor]:
        mu, logvar = vae.encode(inputs)
        kl = kl_standard_normal(mu, logvar).mean(0)
        order = kl.argsort(descending=True)
        rows = traversal(vae, mu[0], order, self.span, self.steps)
        labels = traversal_labels(order, kl, self.factors())
        return {"val/traversal": grid(rows, self.steps, labels)}
