"""M2 of Kingma et al. (2014): the class y as a second, discrete latent beside z.

The generative model is p(y) p(z) p(x|y,z): y uniform over K classes, z ~ N(0, I), and a
decoder that reads z with the one-hot y beside it. Inference has two parts: a classifier
q(y|x), the reason to train M2 at all, and a Gaussian encoder q(z|x,y) that reads the image
and the one-hot label. A labelled image shows its y; for an unlabelled one the objective sums
over every y, weighted by q(y|x) (see `m2_objectives`). Since y carries the class, z is left
to carry the style, so one z decoded with each y draws the same style as every class.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from betavae.vae.likelihoods import build_likelihood
from betavae.vae.model import VAEOutput, gaussian_posterior, reparameterize
from betavae.vae.networks import LabelledEncoder, build_m2_networks, set_output_bias


class M2VAE(nn.Module):
    """The classifier outputs K logits; the encoder takes (x, one-hot y) to 2·latent_dim
    features (means, then log-variances); the decoder maps [z, one-hot y] to likelihood
    parameters of `image_shape`. Labels are passed as class ids (B,) int64 throughout."""

    def __init__(
        self,
        classifier: nn.Module,
        encoder: LabelledEncoder,
        decoder: nn.Module,
        likelihood: nn.Module,
        latent_dim: int,
        num_classes: int,
        image_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.classifier = classifier
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.image_shape = image_shape
        # A classifier built as (the encoder's feature layers, its own head): `infer_at_every_label`
        # then hands it the features the encoder computed instead of computing them again.
        self.shares_features = (
            isinstance(classifier, nn.Sequential) and classifier[0] is encoder.features
        )

    def start_at_mean(self, channel_means: Tensor) -> None:
        """Make the decoder start by drawing `channel_means` (C,), the training images' mean
        intensity per channel, wherever the rest of its output starts near zero.

        From PyTorch's default initialisation, M2 on mostly dark images (sprites: 4% of pixels
        lit) starts at about 3,000 nats of reconstruction per image; the first steps spent on
        that error leave the encoder's features near zero, and the decoder settles on drawing
        each class's mean image from y alone, with KL(z) at 0 and q(y|x) at chance, often for
        epochs. Starting at the mean (about 630 nats) it uses z and learns q(y|x) within the
        first 50 steps.
        """
        set_output_bias(self.decoder, self.likelihood.params_of_mean(channel_means))

    def classify(self, x: Tensor) -> Tensor:
        """Logits (B, K) of q(y|x)."""
        return self.classifier(x)

    def predict(self, x: Tensor) -> Tensor:
        """(B,) the most probable class under q(y|x)."""
        return self.classify(x).argmax(1)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z|x,y), logvar clamped like the VAE's. Without labels, at the
        classes q(y|x) predicts: the code of an image as M2 reads it, which is what the
        evaluations of a VAE's code (MIG, probes, traversals) read of an M2."""
        if y is None:
            y = self.predict(x)
        return gaussian_posterior(self.encoder(x, F.one_hot(y, self.num_classes)))

    def decode(self, z: Tensor, y: Tensor) -> Tensor:
        """Likelihood parameters (B, C, H, W) of p(x|y,z) for latents (B, D) and labels (B,)."""
        y_one_hot = F.one_hot(y, self.num_classes).to(z.dtype)
        return self.decoder(torch.cat([z, y_one_hot], dim=1))

    def forward(self, x: Tensor, y: Tensor) -> VAEOutput:
        return self.decode_posterior(*self.encode(x, y), y)

    def decode_posterior(self, mu: Tensor, logvar: Tensor, y: Tensor) -> VAEOutput:
        """A draw z of q(z|x,y) = N(mu, exp(logvar)), decoded at the labels y."""
        z = reparameterize(mu, logvar)
        return VAEOutput(params=self.decode(z, y), mu=mu, logvar=logvar, z=z)

    def infer_at_every_label(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """What the unlabelled bound needs of B images: q(y|x)'s logits (B, K), and q(z|x,y)'s
        mu and logvar (K·B, D) at every label, class-major (row c·B + i: image i at label c).

        Each image's features are computed once, where encoding every image at every label
        and classifying it would compute them K + 1 times (conv layers: most of the encoder's
        cost); the result is the same.
        """
        features = self.encoder.features(x)
        logits = self.classifier[1:](features) if self.shares_features else self.classify(x)
        mu, logvar = gaussian_posterior(self.encoder.at_every_label(features))
        return logits, mu, logvar

    def reconstruct(self, x: Tensor) -> Tensor:
        """μ decoded at the predicted class, like `VAE.reconstruct`: reproducible pictures."""
        y = self.predict(x)
        mu, _ = self.encode(x, y)
        return self.likelihood.mean(self.decode(mu, y))

    def at_label(self, label: int) -> "M2AtLabel":
        """This M2 with y fixed to `label`: a VAE of z alone, for what draws or scores z."""
        return M2AtLabel(self, label)

    def sample(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One image (n, C, H, W) of each class in `labels` (n,), with z from the prior; pass a
        generator for the same images each call."""
        weight = next(self.parameters())
        n, device, dtype = len(labels), weight.device, weight.dtype
        z = torch.randn(n, self.latent_dim, generator=generator, device=device, dtype=dtype)
        return self.likelihood.mean(self.decode(z, labels.to(device)))


class M2AtLabel:
    """An M2 with its class fixed: what a VAE offers of z (`encode`, `decode`, `likelihood`,
    `latent_dim`), so that traversals, interpolations and the importance-weighted bound of a
    VAE work on p(x|y,z) q(z|x,y) for one y."""

    def __init__(self, m2: M2VAE, label: int) -> None:
        self.m2 = m2
        self.label = label
        self.likelihood = m2.likelihood
        self.latent_dim = m2.latent_dim

    def _labels(self, like: Tensor) -> Tensor:
        return torch.full((len(like),), self.label, device=like.device, dtype=torch.long)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.m2.encode(x, self._labels(x))

    def decode(self, z: Tensor) -> Tensor:
        return self.m2.decode(z, self._labels(z))


def build_m2(
    image_shape: tuple[int, int, int],
    latent_dim: int,
    num_classes: int,
    network: str,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
    likelihood: str,
    gaussian_std: float = 0.1,
    learn_gaussian_std: bool = False,
    shared_convs: bool = False,
    head_dims: Sequence[int] | None = None,
) -> M2VAE:
    """An M2 from the same config values as `build_vae`, plus the number of classes and
    whether q(y|x) reads q(z|x,y)'s conv layers and the hidden layers of its head
    (`build_m2_networks`)."""
    c, h, w = image_shape  # Hydra passes a ListConfig; nn.Unflatten only accepts a real tuple
    image_shape = (c, h, w)
    classifier, encoder, decoder = build_m2_networks(
        network,
        image_shape,
        latent_dim,
        num_classes,
        hidden_dims,
        channels,
        shared_convs,
        head_dims,
    )
    observation = build_likelihood(likelihood, c, gaussian_std, learn_gaussian_std)
    return M2VAE(classifier, encoder, decoder, observation, latent_dim, num_classes, image_shape)
