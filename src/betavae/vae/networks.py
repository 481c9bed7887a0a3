"""Encoder and decoder networks: the classic fully connected VAE and a small stride-2 conv net.

Encoders map images (B, C, H, W) to features: (B, 2 * latent_dim) that the VAE splits into the
mean and log-variance of q(z|x), or class logits for M2's classifier. Decoders map a latent
vector (B, in_features) back to (B, C, H, W): z for the VAE, z and the one-hot label for M2.
Neither ends in an activation, because the likelihood decides what the decoder's numbers mean
(logits for Bernoulli, means for Gaussian).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _dense(in_features: int, hidden_dims: Sequence[int], out_features: int) -> list[nn.Module]:
    """Linear+ReLU through `hidden_dims`, then a bare Linear: the trunk both network kinds share."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    layers.append(nn.Linear(in_features, out_features))
    return layers


def conv_sizes(height: int, width: int, depth: int) -> list[tuple[int, int]]:
    """Spatial size before and after each of `depth` stride-2 convs (each floors H/2, W/2).

    The decoder needs every intermediate size, not just the last, because flooring loses a pixel
    on odd sizes (7 -> 3) that its transposed convs must put back (3 -> 7) via output_padding.
    """
    sizes = [(height, width)]
    for _ in range(depth):
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    if min(sizes[-1]) < 1:
        raise ValueError(
            f"image {height}x{width} is too small for {depth} conv layers: each halves the size, "
            f"so height and width must be at least {2**depth}; use fewer channels entries"
        )
    return sizes


def image_features(
    network: str, image_shape: tuple[int, int, int], channels: Sequence[int]
) -> tuple[list[nn.Module], int]:
    """The layers that turn an image into one flat vector, and its length.

    Every network that reads an image starts with them: the VAE's encoder, and M2's classifier
    q(y|x) and encoder q(z|x,y), which appends the label to this vector. For mlp they are the
    pixels themselves; for conv a stride-2 Conv2d(k=4, p=1)+ReLU per entry of `channels`.
    """
    in_channels, height, width = image_shape
    if network == "mlp":
        return [nn.Flatten()], in_channels * height * width
    if network != "conv":
        raise ValueError(f"unknown network {network!r}; expected 'mlp' or 'conv'")
    if not channels:
        raise ValueError("the conv network needs at least one entry in channels")
    last_h, last_w = conv_sizes(height, width, len(channels))[-1]
    layers: list[nn.Module] = []
    for c_in, c_out in zip((in_channels, *channels[:-1]), channels, strict=True):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
    return [*layers, nn.Flatten()], channels[-1] * last_h * last_w


def image_encoder(
    network: str,
    image_shape: tuple[int, int, int],
    out_features: int,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
) -> nn.Sequential:
    """`image_features`, then the dense trunk to `out_features` (784-400-2·20 for classic MNIST)."""
    features, size = image_features(network, image_shape, channels)
    return nn.Sequential(*features, *_dense(size, hidden_dims, out_features))


class LabelledEncoder(nn.Module):
    """M2's q(z|x,y) network: the image's flat features (`image_features`) with the one-hot
    label appended, then the dense trunk. The label joins where the image is already a
    vector, so the conv layers stay those of the plain encoder."""

    def __init__(self, features: nn.Sequential, trunk: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.trunk = trunk

    def forward(self, x: Tensor, y_one_hot: Tensor) -> Tensor:
        h = self.features(x)
        return self.trunk(torch.cat([h, y_one_hot.to(h.dtype)], dim=1))

    def at_every_label(self, features: Tensor) -> Tensor:
        """The outputs (K·B, 2·latent_dim) for B images' `features` at each of the K labels,
        class-major (row c·B + i: image i at label c), as `forward` would give them.

        The first layer reads [h, one-hot y], i.e. W_h·h + (the column of W_y at y), so h's
        product is computed once per image and the label's column added to it, not the
        whole layer K times: with the features computed once too, the image's share of
        this network costs one pass instead of K.
        """
        first, rest = self.trunk[0], self.trunk[1:]
        size = features.shape[1]
        image_part = F.linear(features, first.weight[:, :size], first.bias)  # (B, W)
        label_columns = first.weight[:, size:].T  # (K, W): the one-hot's columns
        every = label_columns.to(image_part.dtype)[:, None, :] + image_part[None]  # (K, B, W)
        return rest(every.flatten(0, 1))


def mlp_decoder(
    image_shape: tuple[int, int, int], in_features: int, hidden_dims: Sequence[int]
) -> nn.Sequential:
    """Mirror of the mlp encoder: the dense trunk in reverse, reshaped back to an image."""
    channels, height, width = image_shape
    return nn.Sequential(
        *_dense(in_features, list(reversed(hidden_dims)), channels * height * width),
        nn.Unflatten(1, image_shape),
    )


def conv_decoder(
    image_shape: tuple[int, int, int],
    in_features: int,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
) -> nn.Sequential:
    """Mirror of the conv encoder, retracing its spatial sizes exactly back to the input size."""
    out_channels, height, width = image_shape
    sizes = conv_sizes(height, width, len(channels))
    last_h, last_w = sizes[-1]
    layers: list[nn.Module] = [
        *_dense(in_features, list(reversed(hidden_dims)), channels[-1] * last_h * last_w),
        nn.ReLU(),
        nn.Unflatten(1, (channels[-1], last_h, last_w)),
    ]
    steps = zip(
        reversed(channels),
        (*reversed(channels[:-1]), out_channels),
        reversed(sizes[1:]),
        reversed(sizes[:-1]),
        strict=True,
    )
    for c_in, c_out, (h_in, w_in), (h_out, w_out) in steps:
        # A k=4, s=2, p=1 transposed conv maps n to 2n; output_padding adds the pixel that the
        # encoder's floor dropped from an odd size.
        padding = (h_out - 2 * h_in, w_out - 2 * w_in)
        deconv = nn.ConvTranspose2d(
            c_in, c_out, kernel_size=4, stride=2, padding=1, output_padding=padding
        )
        layers += [deconv, nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # the output layer stays linear, as the module doc says


def set_output_bias(decoder: nn.Sequential, channel_values: Tensor) -> None:
    """Set the bias of the decoder's output layer to one value per image channel.

    The output layer is the last one with a bias: a transposed conv (a bias per channel) or,
    for mlp, a Linear whose C·H·W outputs are reshaped channel-major (each value repeated over
    the channel's H·W pixels).
    """
    output = [layer for layer in decoder if getattr(layer, "bias", None) is not None][-1]
    per_channel = output.bias.numel() // len(channel_values)
    with torch.no_grad():
        output.bias.copy_(channel_values.repeat_interleave(per_channel))


def image_decoder(
    network: str,
    image_shape: tuple[int, int, int],
    in_features: int,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
) -> nn.Sequential:
    """The decoder of a network name from the config; `channels` is ignored by mlp."""
    if network == "mlp":
        return mlp_decoder(image_shape, in_features, hidden_dims)
    return conv_decoder(image_shape, in_features, hidden_dims, channels)


def build_networks(
    network: str,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
) -> tuple[nn.Sequential, nn.Sequential]:
    """The VAE's (encoder, decoder) for a network name from the config."""
    return (
        image_encoder(network, image_shape, 2 * latent_dim, hidden_dims, channels),
        image_decoder(network, image_shape, latent_dim, hidden_dims, channels),
    )


def build_m2_networks(
    network: str,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    num_classes: int,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
    shared_convs: bool = False,
    head_dims: Sequence[int] | None = None,
) -> tuple[nn.Sequential, LabelledEncoder, nn.Sequential]:
    """M2's (classifier, encoder, decoder): the VAE's networks with the label added.

    The classifier q(y|x) is the VAE's encoder with `num_classes` logits out; the encoder
    q(z|x,y) reads the one-hot label beside the image's features; the decoder p(x|y,z) reads
    [z, one-hot y], so its first layer is `num_classes` inputs wider than the VAE's.

    With `shared_convs` the classifier reads the encoder's own conv layers (one module in both
    networks), so the features it classifies are trained by every image's bound, not by the
    few labelled images alone: M1's representation learning inside M2. The mlp has no layers
    before the label joins, so there it changes nothing.

    `head_dims` are the classifier's hidden layers after its conv features ([]: a linear head),
    `hidden_dims` when None. A few labelled images train the head alone: a smaller one learns
    them less by heart (see README, A few labels).
    """
    features, size = image_features(network, image_shape, channels)
    encoder_features = nn.Sequential(*features)
    trunk = _dense(size + num_classes, hidden_dims, 2 * latent_dim)
    head = hidden_dims if head_dims is None else head_dims
    if shared_convs:
        classifier = nn.Sequential(encoder_features, *_dense(size, head, num_classes))
    else:
        classifier = image_encoder(network, image_shape, num_classes, head, channels)
    return (
        classifier,
        LabelledEncoder(encoder_features, nn.Sequential(*trunk)),
        image_decoder(network, image_shape, latent_dim + num_classes, hidden_dims, channels),
    )
