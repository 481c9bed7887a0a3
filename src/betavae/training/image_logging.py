"""Pictures of the model in TensorBoard after validation epochs: reconstructions, samples and a
latent traversal, each from the same inputs or draws every time, so the images show the model
changing rather than different data.

How often: every `every_n_epochs` epochs where it is set; by default as often as keeps the
pictures' share of the run's time near `PICTURE_SHARE`, which is every epoch of a run whose
epochs take a few seconds, and every few epochs where epochs take a fraction of a second
(where drawing every epoch took a tenth of the run: benchmarks/throughput.py, small data).
Always after the last epoch, and after the first validation unless the run is expected to end
within `SHORT_RUN_SECONDS` (its pictures would come moments before the last ones).

Decoding, drawing and compressing are all done in the training thread. Drawn in a thread beside
training, their torch and zlib work took a core from training's OpenMP threads, which then wait
at every barrier for the one that lost its core: on the 2-core machine that halved the training
speed of a whole 12-epoch run on 3,600 MNIST-format images, not just while a picture was drawn
(benchmarks/throughput.py, small data: 5,800-8,800 training images/s against 12,600-14,100
drawn in the training thread).
"""

import math
import time
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from betavae.evaluation.pictures import grid, prior_grid, traversal, traversal_labels
from betavae.training.tensorboard import RunLogger
from betavae.vae import M2VAE, VAE, kl_standard_normal

# Validation images whose mean KL per dimension orders and labels a traversal's rows.
TRAVERSAL_KL_INPUTS = 64
# The share of a run's time each kind of picture may take by default.
PICTURE_SHARE = 0.02
# A run expected to end sooner than this after its first validation draws its pictures once,
# at its end.
SHORT_RUN_SECONDS = 10.0


class _ValidationImageLogger(Callback):
    """After validation epochs (see the module's docstring for which) and after the last one,
    log pictures made from the first validation inputs, at the step of that validation's
    scalars. `every_n_epochs=None`: as often as the pictures' time share allows.

    Decoding and drawing the grids and their labels are done here; the PNG files, by the logger
    (`RunLogger.log_image`).
    """

    def __init__(self, every_n_epochs: int | None, num_inputs: int) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_inputs = num_inputs
        self._inputs: Tensor | None = None
        # When the last pictures were made, and the seconds they took.
        self._made_at: float | None = None
        self._cost = 0.0
        # When this process started training, at which step.
        self._started_at = 0.0
        self._start_step = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started_at, self._start_step = time.monotonic(), trainer.global_step

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
        started = time.monotonic()
        with torch.no_grad():
            pictures = self.pictures(pl_module.vae, self._inputs.to(pl_module.device))
        step = logged_step(trainer)
        for tag, picture in pictures.items():
            logger.log_image(tag, picture, step)
        self._made_at = time.monotonic()
        self._cost = self._made_at - started

    def _due(self, trainer: pl.Trainer) -> bool:
        epochs_done = trainer.current_epoch + 1
        if epochs_done >= trainer.max_epochs:
            return True
        if self.every_n_epochs is not None:
            return epochs_done % self.every_n_epochs == 0
        if self._made_at is None:  # the first pictures of this process
            return seconds_left(trainer, self._started_at, self._start_step) >= SHORT_RUN_SECONDS
        return time.monotonic() - self._made_at >= self._cost / PICTURE_SHARE

    def pictures(self, vae: VAE | M2VAE, inputs: Tensor) -> dict[str, Tensor]:
        """TensorBoard tag -> its picture (`grid`), drawn from what the model made of
        `inputs` now."""
        raise NotImplementedError


def seconds_left(trainer: pl.Trainer, started_at: float, start_step: int) -> float:
    """The run's remaining training time at the pace of its steps since `started_at` (a
    `time.monotonic()` reading, at optimizer step `start_step`); infinite without a limit."""
    steps_done = trainer.global_step - start_step
    steps_left = trainer.estimated_stepping_batches - trainer.global_step
    if steps_done <= 0 or not math.isfinite(steps_left):
        return math.inf
    return (time.monotonic() - started_at) / steps_done * steps_left


def logged_step(trainer: pl.Trainer) -> int:
    """The step Lightning logs the epoch's scalars (val/elbo, ...) at: its count of batches that
    stepped, one behind `trainer.global_step` at the end of a training epoch."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


class ImageGridLogger(_ValidationImageLogger):
    """Inputs above their reconstructions, and samples from the same prior draws each time
    (M2's: one row per class, named by `class_names`)."""

    def __init__(
        self,
        every_n_epochs: int | None,
        num_reconstructions: int,
        num_samples: int,
        class_names: Sequence[str] = (),
    ) -> None:
        super().__init__(every_n_epochs, num_reconstructions)
        self.num_samples = num_samples
        self.class_names = class_names
        self._prior_draws: Tensor | None = None

    def pictures(self, vae: VAE | M2VAE, inputs: Tensor) -> dict[str, Tensor]:
        if self._prior_draws is None:
            generator = torch.Generator().manual_seed(0)
            self._prior_draws = torch.randn(self.num_samples, vae.latent_dim, generator=generator)
        reconstructions = vae.reconstruct(inputs)
        draws = self._prior_draws.to(inputs.device)
        samples = prior_grid(vae, draws, int(self.num_samples**0.5), self.class_names)
        pairs = torch.cat([inputs.float(), reconstructions.float()]).cpu()
        return {
            "val/reconstructions": grid(pairs, len(inputs), ["input", "reconstruction"]),
            "val/samples": samples,
        }


class TraversalLogger(_ValidationImageLogger):
    """A latent traversal of the first validation image: one row per dimension, most KL first
    (KL averaged over the first validation batch), to watch what each dimension comes to mean."""

    def __init__(
        self,
        every_n_epochs: int | None,
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

    def pictures(self, vae: VAE | M2VAE, inputs: Tensor) -> dict[str, Tensor]:
        mu, logvar = vae.encode(inputs)  # M2: z at the predicted classes
        kl = kl_standard_normal(mu, logvar).mean(0)
        order = kl.argsort(descending=True)
        # M2's z is drawn at the class predicted for the image: z alone is no image.
        decoder = vae.at_label(int(vae.predict(inputs[:1]))) if isinstance(vae, M2VAE) else vae
        rows = traversal(decoder, mu[0], order, self.span, self.steps).cpu()
        labels = traversal_labels(order.cpu(), kl.cpu(), self.factors())
        return {"val/traversal": grid(rows, self.steps, labels)}
