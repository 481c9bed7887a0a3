"""Callbacks a run always has: image grids and traversals in TensorBoard, a progress bar, and
the log interval; checkpoints are `checkpointing.RunCheckpoints`."""

from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from omegaconf import DictConfig

from betavae.training.image_logging import ImageGridLogger, TraversalLogger
from betavae.training.log_interval import LogInterval


def build_callbacks(
    config: DictConfig, progress_bar: bool, log_every_n_steps: int | None = None
) -> list[Callback]:
    images = config.images
    grids = ImageGridLogger(images.every_n_epochs, images.num_reconstructions, images.num_samples)
    bar = [TQDMProgressBar(refresh_rate=config.progress_bar.refresh_rate)] if progress_bar else []
    walks = config.traversals
    traversals = TraversalLogger(walks.every_n_epochs, walks.span, walks.steps)
    interval = [LogInterval()] if log_every_n_steps is None else []
    return [grids, traversals, *bar, *interval]
