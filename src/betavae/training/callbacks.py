"""Callbacks a run always has: image grids and traversals in TensorBoard, the checkpoint pair."""

from pathlib import Path

from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig

from betavae.training.image_logging import ImageGridLogger, TraversalLogger
from betavae.training.log_interval import LogInterval

BEST_NAME = "best"
LAST_NAME = "last"


def build_callbacks(
    config: DictConfig, run_dir: Path, progress_bar: bool, log_every_n_steps: int | None = None
) -> list[Callback]:
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
    walks = config.traversals
    traversals = TraversalLogger(walks.every_n_epochs, walks.span, walks.steps)
    interval = [LogInterval()] if log_every_n_steps is None else []
    return [best, last, grids, traversals, *bar, *interval]
