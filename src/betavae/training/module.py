"""The LightningModule: a VAE, its objective (β-VAE, capacity, β-TC, FactorVAE or DIP-VAE) and
schedule, and Adam."""

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from betavae.errors import UserError
from betavae.training.module_base import ModuleBase
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


class VAEModule(ModuleBase):
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
        self._track(("loss", "recon", "kl", *_OBJECTIVE_TERMS[objective]), channels_last)
        # A part of the module, so that its weights and Adam moments are in every checkpoint.
        self.discriminator = discriminator(latent_dim) if objective == "factor_vae" else None

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
        """The capacity or a warming-up β, beside the learning rate (`ModuleBase._schedule`)."""
        hp, logged = self.hparams, super()._schedule()
        if hp.objective == "capacity":
            logged["train/capacity"] = self.capacity
        elif hp.objective in ("beta", "beta_tc") and hp.beta_warmup_steps > 0:
            logged["train/beta"] = self.beta
        return logged

    def forward(self, x: Tensor) -> Tensor:
        """Deterministic reconstruction, the natural meaning of calling a trained VAE."""
        return self.vae.reconstruct(x)

    def _terms(self, batch: tuple[Tensor, Tensor]) -> ELBOTerms:
        return elbo_terms(self.vae, self._images(batch[0]))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        terms = self._terms(batch)
        loss, logged = self.objective(terms)
        # FactorVAE's discriminator learns in the same backward pass and optimizer step as the
        # VAE: factor_vae_terms routes each loss's gradients to its own network only.
        optimised = loss + logged["discriminator_loss"] if self.discriminator is not None else loss
        self._accumulate(
            optimised, [loss, terms.recon.mean(), terms.kl.sum(1).mean(), *logged.values()]
        )
        return optimised

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._add_terms_to_epoch(self._terms(batch))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._add_terms_to_epoch(self._terms(batch))

    def _add_terms_to_epoch(self, terms: ELBOTerms) -> None:
        loss, logged = self.objective(terms)
        means = [terms.elbo, loss, terms.recon.mean(), terms.kl.sum(1).mean(), *logged.values()]
        self._add_to_epoch(means, terms.recon.shape[0])

    def _parameter_groups(self) -> list[dict[str, Any]]:
        groups = super()._parameter_groups()
        if self.discriminator is not None:
            # One optimizer, two parameter groups: Adam's moments are per weight, so the
            # discriminator's group is an Adam of its own settings; Lightning's manual
            # optimization, the way to two optimizers, would count each batch as two steps and
            # refuse trainer.gradient_clip_val.
            groups.append({"params": self.discriminator.parameters(), **_DISCRIMINATOR_ADAM})
        return groups

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
