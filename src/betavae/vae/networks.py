"""Encoder and decoder networks: the classic fully connected VAE and a small stride-2 conv net.

Encoders map images (B, C, H, W) to (B, 2 * latent_dim) features that the VAE splits into the
mean and log-variance of q(z|x); decoders map latents (B, latent_dim) back to (B, C, H, W).
Neither ends in an activation, because the likelihood decides what the decoder's numbers mean
(logits for Bernoulli, means for Gaussian).
"""

from collections.abc import Sequence

from torch import nn


def _dense(in_features: int, hidden_dims: Sequence[int], out_features: int) -> list[nn.Module]:
    """Linear+ReLU through `hidden_dims`, then a bare Linear: the trunk both network kinds share."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    layers.append(nn.Linear(in_features, out_features))
    return layers


def mlp_encoder(
    image_shape: tuple[int, int, int], latent_dim: int, hidden_dims: Sequence[int]
) -> nn.Sequential:
    """Flatten the image and run it through the dense trunk (784-400-2·20 for classic MNIST)."""
    channels, height, width = image_shape
    return nn.Sequential(
        nn.Flatten(), *_dense(channels * height * width, hidden_dims, 2 * latent_dim)
    )


def mlp_decoder(
    image_shape: tuple[int, int, int], latent_dim: int, hidden_dims: Sequence[int]
) -> nn.Sequential:
    """Mirror of `mlp_encoder`: the dense trunk in reverse, reshaped back to an image."""
    channels, height, width = image_shape
    return nn.Sequential(
        *_dense(latent_dim, list(reversed(hidden_dims)), channels * height * width),
        nn.Unflatten(1, image_shape),
    )


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


def conv_encoder(
    image_shape: tuple[int, int, int],
    latent_dim: int,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
) -> nn.Sequential:
    """Stride-2 Conv2d(k=4, p=1)+ReLU per entry of `channels`, then the dense trunk."""
    in_channels, height, width = image_shape
    last_h, last_w = conv_sizes(height, width, len(channels))[-1]
    layers: list[nn.Module] = []
    for c_in, c_out in zip((in_channels, *channels[:-1]), channels, strict=True):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
    flat = channels[-1] * last_h * last_w
    return nn.Sequential(*layers, nn.Flatten(), *_dense(flat, hidden_dims, 2 * latent_dim))


def conv_decoder(
    image_shape: tuple[int, int, int],
    latent_dim: int,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
) -> nn.Sequential:
    """Mirror of `conv_encoder`, retracing its spatial sizes exactly back to the input size."""
    out_channels, height, width = image_shape
    sizes = conv_sizes(height, width, len(channels))
    last_h, last_w = sizes[-1]
    layers: list[nn.Module] = [
        *_dense(latent_dim, list(reversed(hidden_dims)), channels[-1] * last_h * last_w),
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


def build_networks(
    network: str,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    hidden_dims: Sequence[int],
    channels: Sequence[int],
) -> tuple[nn.Sequential, nn.Sequential]:
    """(encoder, decoder) for a network name from the config; `channels` is ignored by mlp."""
    if network == "mlp":
        return (
            mlp_encoder(image_shape, latent_dim, hidden_dims),
            mlp_decoder(image_shape, latent_dim, hidden_dims),
        )
    if network == "conv":
        if not channels:
            raise ValueError("the conv network needs at least one entry in channels")
        return (
            conv_encoder(image_shape, latent_dim, hidden_dims, channels),
            conv_decoder(image_shape, latent_dim, hidden_dims, channels),
        )
    raise ValueError(f"unknown network {network!r}; expected 'mlp' or 'conv'")
