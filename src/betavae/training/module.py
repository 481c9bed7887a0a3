"""The LightningModule: a VAE, its objective (β-VAE, capacity, β-TC, FactorVAE or DIP-VAE) and
schedule, and Adam."""

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from betavae.errors import UserError
from betavae.lifecycle.divergence import check_finite
from betavae.vae import (
    ELBOTerms,
    beta_tc_loss,
    build_vae,
    capacity_at,
    capacity_loss,
    covariance,
    covariance_of_codes,
    decompose_kl,
    dip_penalty,
    discriminator,
    elbo_terms,
    factor_vae_loss,
    factor_vae_terms,
)

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


# What each objective logs beside loss, recon and kl: means over the steps since the last write.
_OBJECTIVE_TERMS = {
    "beta": (),
    "capacity": (),
    "beta_tc": ("mi", "tc", "dim_kl"),
    "factor_vae": ("tc", "discriminator_loss"),
    "dip_vae_i": ("dip",),
    "dip_vae_ii": ("dip",),
}
# λ_d / λ_od where dip_lambda_d is not given: Kumar et al.'s, as disentanglement_lib's study.
_DIP_LAMBDA_D_FACTOR = {"dip_vae_i": 10.0, "dip_vae_ii": 1.0}
# FactorVAE's discriminator's Adam, as Kim & Mnih's and disentanglement_lib's.
_DISCRIMINATOR_ADAM = {"lr": 1e-4, "betas": (0.5, 0.9), "weight_decay": 0.0}


class VAEModule(pl.LightningModule):
    """Trains a VAE on the chosen objective and reports the β = 1 bound as `elbo`.

    `objective` is "beta" (recon + β·KL), "capacity" (recon + γ·|KL − C|, C rising linearly to
    `capacity_max` over `capacity_steps`; β is not used), "beta_tc" (recon + MI + β·TC +
    dim-KL, with the minibatch estimator's N the size of the training split), "factor_vae"
    (recon + KL + γ·TC, the TC estimated by a discriminator trained beside the VAE) or
    "dip_vae_i" / "dip_vae_ii" (recon + KL + the DIP penalty on the covariance of μ or of z).

    All arguments are plain Python values so that checkpoints load with the default
    `torch.load(weights_only=True)` and `VAEModule.load_from_checkpoint(path)` alone.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: int = 10,
        network: str = "mlp",
        hidden_dims: Sequence[int] = (400,),
        channels: Sequence[int] = (),
        likelihood: str = "bernoulli",
        gaussian_std: float = 0.1,
        learn_gaussian_std: bool = False,
        objective: str = "beta",
        beta: float = 1.0,
        beta_warmup_steps: int = 0,
        capacity_gamma: float = 1000.0,
        capacity_max: float = 25.0,
        capacity_steps: int = 100_000,
        factor_vae_gamma: float = 10.0,
        dip_lambda_od: float = 1.0,
        dip_lambda_d: float | None = None,
        lr: float = 1e-3,
        adam_betas: Sequence[float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        scheduler: str = "none",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        # Plain lists, not tuples or ListConfigs, so the saved hyper-parameters round-trip
        # through YAML and the weights-only unpickler unchanged (save_hyperparameters reads these
        # locals). TensorBoard's HPARAMS entry holds the whole run config instead
        # (betavae.training.tensorboard_hparams), hence logger=False.
        image_shape, hidden_dims = list(image_shape), list(hidden_dims)
        channels, adam_betas = list(channels), list(adam_betas)
        self.save_hyperparameters(logger=False)
        if objective not in _OBJECTIVE_TERMS:
            allowed = ", ".join(_OBJECTIVE_TERMS)
            raise UserError(f"model.objective={objective!r} is not allowed: one of {allowed}")
        # Training loss, recon, KL and the objective's own terms summed on the device since the
        # last logged step.
        self._train_names = ("loss", "recon", "kl", *_OBJECTIVE_TERMS[objective])
        self.register_buffer("_train_sums", torch.zeros(len(self._train_names)), persistent=False)
        self._train_steps = 0
        # Validation's (and the test's) sums over the epoch, each term weighted by its batch's
        # size, and the count of examples last.
        self._epoch_names = ("elbo", *self._train_names)
        self.register_buffer(
            "_epoch_sums", torch.zeros(len(self._epoch_names) + 1), persistent=False
        )
        self.last_train_loss: float | None = None
        """The latest point of the train/loss curve, for the epoch line and the progress bar."""
        self._dataset_size: int | None = None
        self.vae = build_vae(
            image_shape=tuple(image_shape),
            latent_dim=latent_dim,
            network=network,
            hidden_dims=hidden_dims,
            channels=channels,
            likelihood=likelihood,
            gaussian_std=gaussian_std,
            learn_gaussian_std=learn_gaussian_std,
        )
        # NHWC weights and inputs let the CPU's convolution kernels skip a layout conversion
        # per layer (measured faster for the conv model by benchmarks/throughput.py).
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.vae.to(memory_format=torch.channels_last)
        # A part of the module, so that its weights and Adam moments are in every checkpoint.
        self.discriminator = discriminator(latent_dim) if objective == "factor_vae" else None

    def architecture(self) -> dict[str, Any]:
        return {key: self.hparams[key] for key in ARCHITECTURE_KEYS}

    def setup(self, stage: str) -> None:
        """β-TC's estimator needs N, the number of examples its minibatches are drawn from."""
        if self.hparams.objective == "beta_tc":
            self._dataset_size = len(self.trainer.datamodule.train_set)

    @property
    def beta(self) -> float:
        """β now: the target value, reached linearly over `beta_warmup_steps` optimizer steps."""
        target, warmup = self.hparams.beta, self.hparams.beta_warmup_steps
        if warmup == 0:
            return target
        return target * min(1.0, self.global_step / warmup)

    @property
    def capacity(self) -> float:
        """The capacity objective's C now, in nats: a function of the step, so a resumed run
        continues the schedule where it stopped."""
        hp = self.hparams
        return capacity_at(self.global_step, hp.capacity_max, hp.capacity_steps)

    def objective(self, terms: ELBOTerms) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss to minimise now, and the objective's own terms (batch means) to log."""
        hp = self.hparams
        if hp.objective == "capacity":
            return capacity_loss(terms, hp.capacity_gamma, self.capacity), {}
        if hp.objective == "beta_tc":
            parts = decompose_kl(terms.z, terms.mu, terms.logvar, self._dataset_size)
            logged = {
                "mi": parts.mutual_information.mean(),
                "tc": parts.total_correlation.mean(),
                "dim_kl": parts.dimension_wise_kl.mean(),
            }
            return beta_tc_loss(terms.recon, parts, self.beta), logged
        if hp.objective == "factor_vae":
            factor = factor_vae_terms(self.discriminator, terms.z)
            logged = {
                "tc": factor.total_correlation.mean(),
                "discriminator_loss": factor.discriminator_loss,
            }
            return factor_vae_loss(terms, factor.total_correlation, hp.factor_vae_gamma), logged
        if hp.objective == "dip_vae_i":
            return self._dip_loss(terms, covariance(terms.mu))
        if hp.objective == "dip_vae_ii":
            return self._dip_loss(terms, covariance_of_codes(terms.mu, terms.logvar))
        return terms.loss(self.beta), {}

    def _dip_loss(self, terms: ELBOTerms, cov: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """recon + KL + the DIP penalty on `cov`, λ_d (unless given) the paper's ratio to λ_od."""
        hp = self.hparams
        lambda_d = hp.dip_lambda_d
        if lambda_d is None:
            lambda_d = _DIP_LAMBDA_D_FACTOR[hp.objective] * hp.dip_lambda_od
        penalty = dip_penalty(cov, hp.dip_lambda_od, lambda_d)
        return terms.elbo + penalty, {"dip": penalty}

    def _schedule(self) -> dict[str, float]:
        """The scheduled weights and learning rate now, logged with the training means where
        they change during the run: a flat line of a setting would take the first card of its
        TensorBoard group, and HPARAMS has the value."""
        hp, logged = self.hparams, {}
        if hp.objective == "capacity":
            logged["train/capacity"] = self.capacity
        elif hp.objective in ("beta", "beta_tc") and hp.beta_warmup_steps > 0:
            logged["train/beta"] = self.beta
        if hp.scheduler != "none":
            logged["train/lr"] = self.optimizers().param_groups[0]["lr"]
        return logged

    def forward(self, x: Tensor) -> Tensor:
        """Deterministic reconstruction, the natural meaning of calling a trained VAE."""
        return self.vae.reconstruct(x)

    def _terms(self, batch: tuple[Tensor, Tensor]) -> ELBOTerms:
        return elbo_terms(self.vae, batch[0].contiguous(memory_format=self._memory_format))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        terms = self._terms(batch)
        loss, logged = self.objective(terms)
        # FactorVAE's discriminator learns in the same backward pass and optimizer step as the
        # VAE: factor_vae_terms routes each loss's gradients to its own network only.
        optimised = loss + logged["discriminator_loss"] if self.discriminator is not None else loss
        if loss.device.type == "cpu":  # elsewhere at the logging steps: see check_finite
            check_finite(optimised, self.global_step + 1)
        with torch.no_grad():
            means = [loss, terms.recon.mean(), terms.kl.sum(1).mean(), *logged.values()]
            self._train_sums += torch.stack(means)
        self._train_steps += 1
        # Lightning writes step metrics every `log_every_n_steps` batches; logging only then,
        # the means since the last write, spares every other step the logging work and,
        # on a GPU, the host-device sync.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self._log_train_means()
        return optimised

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

    def on_validation_epoch_start(self) -> None:
        self._epoch_sums.zero_()

    def on_test_epoch_start(self) -> None:
        self._epoch_sums.zero_()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._add_to_epoch(self._terms(batch))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._add_to_epoch(self._terms(batch))

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_means("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_means("test")

    def _add_to_epoch(self, terms: ELBOTerms) -> None:
        loss, logged = self.objective(terms)
        means = [terms.elbo, loss, terms.recon.mean(), terms.kl.sum(1).mean(), *logged.values()]
        count = terms.recon.shape[0]
        with torch.no_grad():
            self._epoch_sums[:-1] += torch.stack(means).float() * count
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

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups: list[dict[str, Any]] = [{"params": self.vae.parameters()}]
        if self.discriminator is not None:
            # One optimizer, two parameter groups: Adam's moments are per weight, so the
            # discriminator's group is an Adam of its own settings; Lightning's manual
            # optimization, the way to two optimizers, would count each batch as two steps and
            # refuse trainer.gradient_clip_val.
            groups.append({"params": self.discriminator.parameters(), **_DISCRIMINATOR_ADAM})
        optimizer = torch.optim.Adam(
            groups,
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

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """FactorVAE clips the VAE's and the discriminator's gradients each by their own norm,
        as two optimizers would: by one norm over both, how far one network's step is cut
        would depend on the other's gradients."""
        if self.discriminator is None or gradient_clip_algorithm == "value":
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )
        elif gradient_clip_val:
            for group in optimizer.param_groups:
                torch.nn.utils.clip_grad_norm_(group["params"], gradient_clip_val)

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
