"""The LightningModule of M2 (Kingma et al. 2014): a classifier q(y|x) and a VAE conditioned
on the class, trained on a few labelled images and many unlabelled ones, and Adam.

Its batches come from a semi-supervised data module (`data.labels_per_class`): a training
batch is (images, targets, labels, labelled images, their labels), the images' own labels
unused; a validation or test batch is (images, targets, labels).
"""

from collections.abc import Sequence

from torch import Tensor

from betavae.training.module_base import ModuleBase
from betavae.vae import (
    M2Terms,
    build_m2,
    classification_loss,
    labelled_terms,
    semi_supervised_loss,
    unlabelled_terms,
)

# What a training step logs beside loss, recon and kl: the classifier on the labelled batch.
_CLASSIFIER_TERMS = ("accuracy", "cross_entropy")


class M2Module(ModuleBase):
    """Trains M2 on Kingma et al.'s objective J^α, in nats per example (`semi_supervised_loss`).

    Logged like a VAE's: `elbo`, the bound on −log p(x) (of the unlabelled and labelled images
    in the data's proportions while training; of every image as unlabelled, −U(x), on the
    validation and test splits, so it compares with a VAE's), `recon`, `kl` (of z and of y),
    and `loss` = elbo + m2_alpha·cross_entropy; beside them the classifier's `accuracy` and
    `cross_entropy` (on the labelled batch while training, on every image of a split).

    All arguments are plain Python values, as `VAEModule`'s, so that checkpoints load with
    `M2Module.load_from_checkpoint(path)` alone. `m2_shared_convs` defaults to False and
    `m2_head_dims` to None (the classifier's head as wide as `hidden_dims`), the networks of
    the checkpoints saved before they existed; the conv config sets both.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int,
        latent_dim: int = 10,
        network: str = "mlp",
        hidden_dims: Sequence[int] = (400,),
        channels: Sequence[int] = (),
        likelihood: str = "bernoulli",
        gaussian_std: float = 0.1,
        learn_gaussian_std: bool = False,
        objective: str = "m2",
        m2_alpha: float = 0.1,
        m2_shared_convs: bool = False,
        m2_head_dims: Sequence[int] | None = None,
        lr: float = 1e-3,
        adam_betas: Sequence[float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        scheduler: str = "none",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        # Plain lists, as VAEModule's (see there).
        image_shape, hidden_dims = list(image_shape), list(hidden_dims)
        channels, adam_betas = list(channels), list(adam_betas)
        m2_head_dims = None if m2_head_dims is None else list(m2_head_dims)
        self.save_hyperparameters(logger=False)
        self.vae = build_m2(
            image_shape=tuple(image_shape),
            latent_dim=latent_dim,
            num_classes=num_classes,
            network=network,
            hidden_dims=hidden_dims,
            channels=channels,
            likelihood=likelihood,
            gaussian_std=gaussian_std,
            learn_gaussian_std=learn_gaussian_std,
            shared_convs=m2_shared_convs,
            head_dims=m2_head_dims,
        )
        self._track(("loss", "recon", "kl", *_CLASSIFIER_TERMS), channels_last)
        self._labelled_fraction: float | None = None

    def architecture(self) -> dict[str, object]:
        return {**super().architecture(), "num_classes": self.hparams.num_classes}

    def setup(self, stage: str) -> None:
        """The labelled share of the training split, N_l / N, that weighs the two bounds, and
        the decoder started at the training images' mean (`M2VAE.start_at_mean`; a resumed
        run's checkpoint replaces it, since Lightning restores the weights after `setup`)."""
        if stage == "fit":
            data = self.trainer.datamodule
            self._labelled_fraction = len(data.labelled_set) / len(data.train_set)
            self.vae.start_at_mean(data.train_channel_means())

    def forward(self, x: Tensor) -> Tensor:
        """Class logits of q(y|x): what M2 is trained for."""
        return self.vae.classify(x)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        images, _, _, labelled_images, labels = batch
        labelled_images = self._images(labelled_images)
        labelled = labelled_terms(self.vae, labelled_images, labels)
        # One pass of the classifier for both the loss and the accuracy logged beside it.
        logits = self.vae.classify(labelled_images)
        cross_entropy = classification_loss(logits, labels)
        unlabelled = unlabelled_terms(self.vae, self._images(images))
        fraction = self._labelled_fraction
        loss = semi_supervised_loss(
            labelled, cross_entropy, unlabelled, fraction, self.hparams.m2_alpha
        )
        correct = logits.argmax(1) == labels
        recon = fraction * labelled.recon.mean() + (1 - fraction) * unlabelled.recon.mean()
        kl = fraction * _kl(labelled).mean() + (1 - fraction) * _kl(unlabelled).mean()
        self._accumulate(loss, [loss, recon, kl, correct.float().mean(), cross_entropy.mean()])
        return loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._add_batch_to_epoch(batch)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._add_batch_to_epoch(batch)

    def _add_batch_to_epoch(self, batch: tuple[Tensor, ...]) -> None:
        """Every image of the split as unlabelled (−U(x)), and the classifier against labels."""
        images, _, labels = batch
        terms = unlabelled_terms(self.vae, self._images(images))
        cross_entropy = -terms.log_q_y.gather(1, labels[:, None]).squeeze(1)
        elbo = terms.negative_bound
        means = [
            elbo.mean(),
            (elbo + self.hparams.m2_alpha * cross_entropy).mean(),
            terms.recon.mean(),
            _kl(terms).mean(),
            (terms.log_q_y.argmax(1) == labels).float().mean(),
            cross_entropy.mean(),
        ]
        self._add_to_epoch(means, len(images))


def _kl(terms: M2Terms) -> Tensor:
    """(B,) the KL of both latents, z and y: what the bound adds to the reconstruction."""
    return terms.kl_z.sum(1) + terms.kl_y
