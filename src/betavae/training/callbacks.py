"""Callbacks a run always has: image grids and traversals in TensorBoard, its progress on the
console, and the log interval; checkpoints are `checkpointing.RunCheckpoints`."""

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from omegaconf import DictConfig

from betavae.training.disentanglement import ValidationMIG
from betavae.training.image_logging import ImageGridLogger, TraversalLogger
from betavae.training.log_interval import LogInterval


class EpochLines(Callback):
    """One line per epoch, where a progress bar would write a line at every redraw (output
    going to a file or a pipe, e.g. a SLURM log)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        shown = ("train/loss", "val/elbo")
        values = ", ".join(
            f"{name} {float(trainer.callback_metrics[name]):.2f}"
            for name in shown
            if name in trainer.callback_metrics
        )
        print(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {values}", flush=True)


def build_callbacks(
    config: DictConfig,
    progress_bar: bool,
    log_every_n_steps: int | None = None,
    factor_names: tuple[str, ...] | None = None,
) -> list[Callback]:
    """`progress_bar`: a redrawn bar (on a terminal) rather than a line per epoch;
    `factor_names`: the data's generative factors, if it has them (then `val/mig` is logged
    and traversal rows are labelled with the factor they follow)."""
    mig = [] if factor_names is None else [ValidationMIG(factor_names)]
    images = config.images
    grids = ImageGridLogger(images.every_n_epochs, images.num_reconstructions, images.num_samples)
    bar = [TQDMProgressBar(refresh_rate=config.progress_bar.refresh_rate)] if progress_bar else []
    walks = config.traversals
    traversals = TraversalLogger(
        walks.every_n_epochs,
        walks.span,
        walks.steps,
        (lambda: mig[0].dimension_factors) if mig else tuple,
    )
    interval = [LogInterval()] if log_every_n_steps is None else []
    return [*mig, grids, traversals, *(bar or [EpochLines()]), *interval]
