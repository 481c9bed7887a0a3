"""What the LightningModules of the VAE (`module.VAEModule`) and of M2 (`m2_module.M2Module`)
share: Adam and its schedule, channels-last inputs, and the training means logged only at the
logging steps."""

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from betavae.errors import UserError
from betavae.lifecycle.divergence import check_finite
from betavae.training.tensorboard import RunLogger

# Hyper-parameters that fix the shapes of the weights: a checkpoint only fits a module whose
# values for these match.
ARCHITECTURE_KEYS = (
    "image_shape",
    "network",
    "latent_dim",
    "hidden_dims",
    "channels",
    "likelihood",
    "learn_gaussian_std",
)


class ModuleBase(pl.LightningModule):
    """A subclass saves its hyper-parameters (`lr`, `adam_betas`, `weight_decay`, `scheduler`
    among them), builds its model in `self.vae`, and calls `_track(names)` with the names of
    what its training steps pass to `_accumulate`: `loss`, `recon` and `kl` first; its
    validation and test steps pass `_add_to_epoch` the batch's `elbo`, then the same."""

    def _track(self, names: Sequence[str], channels_last: bool) -> None:
        # Training loss, recon, KL and the objective's own terms summed on the device since the
        # last logged step.
        self._train_names = tuple(names)
        self.register_buffer("_train_sums", torch.zeros(len(names)), persistent=False)
        self._train_steps = 0
        # Validation's (and the test's) sums over the epoch, each term weighted by its batch's
        # size, and the count of examples last.
        self._epoch_names = ("elbo", *self._train_names)
        self.register_buffer(
            "_epoch_sums", torch.zeros(len(self._epoch_names) + 1), persistent=False
        )
        self.last_train_loss: float | None = None
        """The latest point of the train/loss curve, for the epoch line and the progress bar."""
        # NHWC weights and inputs let the CPU's convolution kernels skip a layout conversion
        # per layer (measured faster for the conv model by benchmarks/throughput.py).
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.vae.to(memory_format=torch.channels_last)

    def architecture(self) -> dict[str, Any]:
        return {key: self.hparams[key] for key in ARCHITECTURE_KEYS}

    def _images(self, images: Tensor) -> Tensor:
        return images.contiguous(memory_format=self._memory_format)

    def _accumulate(self, optimised: Tensor, means: Sequence[Tensor]) -> None:
        """Add a step's batch means (in the order of `_track`'s names) to the sums, and log the
        means since the last logging step when this step is one."""
        if optimised.device.type == "cpu":  # elsewhere at the logging steps: see check_finite
            check_finite(optimised, self.global_step + 1)
        with torch.no_grad():
            self._train_sums += torch.stack([m.detach().float() for m in means])
        self._train_steps += 1
        # Lightning writes step metrics every `log_every_n_steps` batches; logging only then,
        # the means since the last write, spares every other step the logging work and,
        # on a GPU, the host-device sync.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self._log_train_means()

    def _log_train_means(self) -> None:
        """The means since the last point, written to the loggers in one host transfer.

        Straight to the loggers rather than through `self.log`, which costs 2-4 ms a call on
        the CPU (Lightning's checks and bookkeeping of each value): on short epochs that was a
        tenth of the run (benchmarks/throughput.py, small data).
        """
        values = (self._train_sums / self._train_steps).tolist()
        means = dict(zip(self._train_names, values, strict=True))
        check_finite(torch.tensor(means["loss"]), self.global_step + 1)
        points = {
            "train/elbo": means["recon"] + means["kl"],
            **{f"train/{name}": value for name, value in means.items()},
            **self._schedule(),
        }
        for logger in self.loggers:
            logger.log_metrics(points, step=self.global_step)
        self.last_train_loss = means["loss"]
        self._train_sums.zero_()
        self._train_steps = 0

    def _schedule(self) -> dict[str, float]:
        """Settings that change during the run, logged with the training means: a flat line of
        a setting would take the first card of its TensorBoard group, and HPARAMS has the
        value. Here the learning rate under a scheduler."""
        if self.hparams.scheduler == "none":
            return {}
        return {"train/lr": self.optimizers().param_groups[0]["lr"]}

    def on_train_start(self) -> None:
        """Hide the points a killed attempt wrote past the step this one starts from."""
        for logger in self.loggers:
            if isinstance(logger, RunLogger):
                logger.begin_session(self.global_step)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The curves up to the checkpoint's step go to disk with it: the event file is
        otherwise flushed every few seconds, and a run killed (SIGKILL) after a checkpoint and
        resumed from it would miss the points logged before the kill."""
        for logger in self.loggers:
            if isinstance(logger, RunLogger):
                logger.flush()

    def on_validation_epoch_start(self) -> None:
        self._epoch_sums.zero_()

    def on_test_epoch_start(self) -> None:
        self._epoch_sums.zero_()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_means("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_means("test")

    def _add_to_epoch(self, means: Sequence[Tensor], count: int) -> None:
        """Add a validation or test batch of `count` examples: its means of `elbo` and the
        tracked names, in that order."""
        with torch.no_grad():
            self._epoch_sums[:-1] += torch.stack([m.detach().float() for m in means]) * count
            self._epoch_sums[-1] += count

    def _log_epoch_means(self, stage: str) -> None:
        """Each term's mean over every example of the split (summed across DDP ranks), logged
        once per epoch. The test numbers (one per run) go to metrics.json and the console but
        not to TensorBoard: as single dots they would fill the first screen of its TIME SERIES
        view, which opens the first two tag groups by name (test, train), and leave the
        validation curves and pictures closed."""
        totals = self.trainer.strategy.reduce(self._epoch_sums.clone(), reduce_op="sum")
        if totals[-1] == 0:  # no batch (a validation of no batches)
            return
        means = (totals[:-1] / totals[-1]).tolist()
        named = {
            f"{stage}/{name}": mean for name, mean in zip(self._epoch_names, means, strict=True)
        }
        # The means are the same on every rank already; without sync_dist Lightning warns on
        # every rank that epoch-level values should be synced.
        self.log_dict(named, logger=stage != "test", sync_dist=True)

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """Adam's parameter groups: the model's weights, and any network of its own settings."""
        return [{"params": self.vae.parameters()}]

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.Adam(
            self._parameter_groups(),
            lr=hp.lr,
            betas=tuple(hp.adam_betas),
            weight_decay=hp.weight_decay,
            **self._adam_implementation(),
        )
        if hp.scheduler == "none":
            return optimizer
        if hp.scheduler == "cosine":
            total_steps = max(1, int(self.trainer.estimated_stepping_batches))
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": cosine, "interval": "step"},
            }
        if hp.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=5)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": plateau, "monitor": "val/elbo", "interval": "epoch"},
            }
        raise UserError(f"model.scheduler={hp.scheduler!r} is not allowed: none, cosine or plateau")

    def _adam_implementation(self) -> dict[str, bool]:
        """The fused Adam kernel: one pass over all weights per step instead of one kernel per
        operation (foreach) or per tensor (torch's CPU default); on a 2-core CPU it measured
        1-2 ms less per step of the 784-400-20 MLP than either (benchmarks/throughput.py).

        It unscales gradients inside its step, after Lightning would have clipped them, so
        Lightning refuses it with gradient clipping under mixed precision (16-mixed and
        bf16-mixed alike): then foreach, the next best.
        """
        clipping = bool(self.trainer.gradient_clip_val)
        if clipping and self.trainer.precision in ("16-mixed", "bf16-mixed"):
            return {"foreach": True}
        return {"fused": True}
