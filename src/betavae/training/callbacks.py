"""Callbacks a run always has: the start of its plan, image grids and traversals in
TensorBoard, its progress on the console, and the log interval; checkpoints and stops are the
run's life's (`betavae.lifecycle.checkpoints`, `.stopping`)."""

from collections.abc import Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from omegaconf import DictConfig

from betavae.lifecycle.plan import Plan, begin
from betavae.lifecycle.signals import STOP_REQUESTS
from betavae.training.disentanglement import ValidationMIG
from betavae.training.image_logging import ImageGridLogger, TraversalLogger
from betavae.training.log_interval import LogInterval
from betavae.training.tensorboard_hparams import record_hparams


class BeginRun(Callback):
    """Makes the plan's own writes (config.yaml; a finished run's metrics.json set aside, ...)
    and the run's HPARAMS entry once every DDP rank has planned: Lightning calls `setup` after
    the ranks have met, and each rank waits here until rank zero has written."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.is_global_zero:
            begin(self.plan)
            record_hparams(self.plan.run_dir, self.plan.sweep_dir)
        trainer.strategy.barrier("BeginRun")


class EpochProgressBar(TQDMProgressBar):
    """Lightning's bar, counting epochs as the epoch lines do (`Epoch 1/4`), and cleared when a
    signal stops the run, so that what is said about the stop stands on lines of its own."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self.train_progress_bar.set_description(
            f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        )

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if STOP_REQUESTS.signum is not None:
            self._clear()
            return
        super().on_train_batch_end(trainer, *args, **kwargs)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        """The latest point of train/loss and the last validation's ELBO (the training means go
        to the loggers directly, not through Lightning's progress-bar metrics)."""
        metrics = super().get_metrics(trainer, pl_module)
        if pl_module.last_train_loss is not None:
            metrics["train/loss"] = f"{pl_module.last_train_loss:.3g}"
        return {**metrics, **_last_validation(trainer, elbo_format=".3g")}

    def on_exception(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        self._clear()

    def _clear(self) -> None:
        for bar in (self._train_progress_bar, self._val_progress_bar):
            if bar is not None and not bar.disable:
                bar.leave = False
                bar.close()


class EpochLines(Callback):
    """One line per epoch, where a progress bar would write a line at every redraw (output
    going to a file or a pipe, e.g. a SLURM log)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        shown = {}
        if pl_module.last_train_loss is not None:
            shown["train/loss"] = f"{pl_module.last_train_loss:.2f}"
        shown.update(_last_validation(trainer, elbo_format=".2f"))
        values = ", ".join(f"{name} {value}" for name, value in shown.items())
        print(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {values}", flush=True)


def _last_validation(trainer: pl.Trainer, elbo_format: str) -> dict[str, str]:
    """The last validation's ELBO and, of a run with a classifier (M2), its accuracy: what the
    console shows of each epoch beside the training loss."""
    formats = {"val/elbo": elbo_format, "val/accuracy": ".3f"}
    return {
        key: format(float(trainer.callback_metrics[key]), spec)
        for key, spec in formats.items()
        if key in trainer.callback_metrics
    }


def build_callbacks(
    config: DictConfig,
    progress_bar: bool,
    log_every_n_steps: int | None = None,
    factor_names: tuple[str, ...] | None = None,
    class_names: Sequence[str] = (),
) -> list[Callback]:
    """`progress_bar`: a redrawn bar (on a terminal) rather than a line per epoch;
    `factor_names`: the data's generative factors, if it has them (then `val/mig` is logged
    and traversal rows are labelled with the factor they follow); `class_names`: the data's
    classes, which label the rows of M2's samples."""
    mig = [] if factor_names is None else [ValidationMIG(factor_names)]
    images = config.images
    grids = ImageGridLogger(
        images.every_n_epochs, images.num_reconstructions, images.num_samples, class_names
    )
    bar = [EpochProgressBar(refresh_rate=config.progress_bar.refresh_rate)] if progress_bar else []
    walks = config.traversals
    traversals = TraversalLogger(
        walks.every_n_epochs,
        walks.span,
        walks.steps,
        (lambda: mig[0].dimension_factors) if mig else tuple,
    )
    interval = [LogInterval()] if log_every_n_steps is None else []
    return [*mig, grids, traversals, *(bar or [EpochLines()]), *interval]
