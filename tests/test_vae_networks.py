"""Network shapes and sizes, and the VAE's image-space methods built on them."""

import pytest
import torch

from betavae.vae import VAE, build_vae
from betavae.vae.networks import conv_sizes

CONV_CHANNELS = [4, 4, 8, 8]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("network", ["mlp", "conv"])
@pytest.mark.parametrize(
    "image_shape", [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32), (1, 64, 64), (3, 64, 64)]
)
def test_forward_shapes(network: str, image_shape: tuple[int, int, int]) -> None:
    vae = build_vae(image_shape, 6, network, [32], CONV_CHANNELS, "bernoulli")
    x = torch.rand(2, *image_shape)

    out = vae(x)

    assert out.params.shape == (2, *image_shape)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (2, 6)
    assert vae.reconstruct(x).shape == (2, *image_shape)


def test_classic_mlp_has_the_parameter_count_of_the_784_400_20_vae() -> None:
    vae = build_vae((1, 28, 28), 20, "mlp", [400], [], "bernoulli")
    # pytorch/examples vae: fc1 784→400, fc21/fc22 400→20 each, fc3 20→400, fc4 400→784.
    expected = (784 * 400 + 400) + 2 * (400 * 20 + 20) + (20 * 400 + 400) + (400 * 784 + 784)

    assert sum(p.numel() for p in vae.parameters()) == expected == 652_824


def test_conv_sizes_floor_each_halving() -> None:
    assert conv_sizes(28, 28, 4) == [(28, 28), (14, 14), (7, 7), (3, 3), (1, 1)]
    assert conv_sizes(64, 33, 2) == [(64, 33), (32, 16), (16, 8)]


@pytest.mark.parametrize("height", range(16, 40))
def test_conv_decoder_restores_the_exact_input_size(height: int) -> None:
    image_shape = (2, height, 16 + height % 5)
    vae = build_vae(image_shape, 3, "conv", [], CONV_CHANNELS, "gaussian")
    z = torch.randn(1, 3)

    assert vae.decode(z).shape == (1, *image_shape)


def test_conv_decoder_retraces_the_encoder_sizes_layer_by_layer() -> None:
    vae = build_vae((1, 28, 28), 3, "conv", [16], CONV_CHANNELS, "bernoulli")
    sizes = []
    h = torch.randn(1, 3)
    for layer in vae.decoder:
        h = layer(h)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            sizes.append(tuple(h.shape[-2:]))

    assert sizes == [(3, 3), (7, 7), (14, 14), (28, 28)]


@pytest.mark.parametrize("image_shape", [(1, 15, 15), (1, 16, 15), (3, 8, 64)])
def test_conv_rejects_an_image_too_small_for_its_layers(image_shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match=r"too small for 4 conv layers.*at least 16"):
        build_vae(image_shape, 3, "conv", [], CONV_CHANNELS, "bernoulli")


def test_conv_needs_at_least_one_layer() -> None:
    with pytest.raises(ValueError, match="at least one entry in channels"):
        build_vae((1, 28, 28), 3, "conv", [16], [], "bernoulli")


@pytest.mark.parametrize(
    ("network", "likelihood", "message"),
    [
        ("resnet", "bernoulli", "unknown network 'resnet'"),
        ("mlp", "laplace", "unknown likelihood 'laplace'"),
    ],
)
def test_build_vae_rejects_unknown_names(network: str, likelihood: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_vae((1, 28, 28), 3, network, [16], CONV_CHANNELS, likelihood)


def _small_vae(likelihood: str) -> VAE:
    return build_vae((3, 32, 32), 5, "conv", [16], CONV_CHANNELS, likelihood)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_samples_are_images_in_the_unit_range(likelihood: str) -> None:
    samples = _small_vae(likelihood).sample(7)

    assert samples.shape == (7, 3, 32, 32)
    assert samples.min() >= 0 and samples.max() <= 1


def test_sample_is_reproducible_with_a_generator() -> None:
    vae = _small_vae("bernoulli")

    first = vae.sample(3, generator=torch.Generator().manual_seed(42))
    second = vae.sample(3, generator=torch.Generator().manual_seed(42))

    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_reconstruct_decodes_the_posterior_mean() -> None:
    vae = _small_vae("bernoulli")
    x = torch.rand(2, 3, 32, 32)
    mu, _ = vae.encode(x)

    reconstruction = vae.reconstruct(x)

    torch.testing.assert_close(reconstruction, torch.sigmoid(vae.decode(mu)))
    torch.testing.assert_close(vae.reconstruct(x), reconstruction, rtol=0, atol=0)


def test_learned_gaussian_std_is_a_model_parameter() -> None:
    vae = build_vae((3, 8, 8), 2, "mlp", [8], [], "gaussian", 0.3, learn_gaussian_std=True)

    assert any(p is vae.likelihood.log_std for p in vae.parameters())
