"""M2 (Kingma et al. 2014): its networks, and its bounds against closed forms and against the
sum over classes written out as a loop."""

import itertools
import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal, kl_divergence

from betavae.vae import (
    M2VAE,
    M2Terms,
    build_m2,
    classification_loss,
    importance_weighted_log_likelihood,
    labelled_terms,
    m2_importance_weighted_log_likelihood,
    semi_supervised_loss,
    unlabelled_terms,
)
from betavae.vae import m2 as m2_module

CLASSES = 4
LATENT = 3
NETWORKS = ["mlp", "conv"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def fixed_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """ε = 0.5 in every dimension instead of a draw from N(0, I), so that two computations of
    the same bound decode the same z and can be compared exactly."""
    monkeypatch.setattr(
        m2_module, "reparameterize", lambda mu, logvar: mu + 0.5 * torch.exp(0.5 * logvar)
    )


def _m2(network: str, likelihood: str = "bernoulli", shared_convs: bool = False) -> M2VAE:
    return build_m2(
        (1, 16, 16), LATENT, CLASSES, network, [32], [4, 8], likelihood, 0.1, False, shared_convs
    )


def _images(n: int = 5) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16)


def _set_classifier_logits(m2: M2VAE, logits: torch.Tensor) -> None:
    """Make q(y|x) the same for every image: the last layer outputs `logits` whatever its input."""
    last = m2.classifier[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(logits)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("image_shape", [(1, 16, 16), (3, 28, 28), (1, 32, 32), (3, 64, 64)])
def test_shapes(network: str, image_shape: tuple[int, int, int]) -> None:
    m2 = build_m2(image_shape, LATENT, CLASSES, network, [32], [4, 4, 8, 8], "gaussian")
    x, y = torch.rand(2, *image_shape), torch.tensor([0, 3])

    mu, logvar = m2.encode(x, y)
    out = m2(x, y)
    labelled, unlabelled = labelled_terms(m2, x, y), unlabelled_terms(m2, x)

    assert m2.classify(x).shape == (2, CLASSES)
    assert mu.shape == logvar.shape == out.z.shape == (2, LATENT)
    assert out.params.shape == (2, *image_shape)
    for terms in (labelled, unlabelled):
        assert terms.recon.shape == terms.kl_y.shape == terms.negative_bound.shape == (2,)
        assert terms.kl_z.shape == (2, LATENT)
    assert classification_loss(m2.classify(x), y).shape == (2,)
    samples = m2.sample(torch.arange(CLASSES))
    assert samples.shape == (CLASSES, *image_shape)
    assert samples.min() >= 0 and samples.max() <= 1


def test_mlp_networks_are_the_vaes_with_the_label_beside_the_image_and_beside_z() -> None:
    pixels, hidden = 784, 500
    m2 = build_m2((1, 28, 28), 50, 10, "mlp", [hidden], [], "bernoulli")

    def parameters(network: torch.nn.Module) -> int:
        return sum(p.numel() for p in network.parameters())

    def dense(*sizes: int) -> int:
        return sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes))

    # Kingma et al.'s MNIST M2: latent 50, one hidden layer of 500 in each network.
    assert parameters(m2.classifier) == dense(pixels, hidden, 10)
    assert parameters(m2.encoder) == dense(pixels + 10, hidden, 2 * 50)
    assert parameters(m2.decoder) == dense(50 + 10, hidden, pixels)


@pytest.mark.parametrize("network", NETWORKS)
def test_the_label_is_read_by_encoder_and_decoder(network: str) -> None:
    m2 = _m2(network)
    x, z = _images(1).expand(CLASSES, -1, -1, -1), torch.randn(1, LATENT).expand(CLASSES, -1)
    every_label = torch.arange(CLASSES)

    mu, _ = m2.encode(x, every_label)
    params = m2.decode(z, every_label)

    assert len(mu.unique(dim=0)) == len(params.unique(dim=0)) == CLASSES
    one_hot = torch.eye(CLASSES)
    torch.testing.assert_close(params, m2.decoder(torch.cat([z, one_hot], 1)))


def test_labelled_bound_matches_closed_forms(fixed_noise: None) -> None:
    m2 = _m2("conv")
    x, y = _images().round(), torch.tensor([0, 1, 2, 3, 1])  # binary, for Bernoulli's support
    mu, logvar = m2.encode(x, y)
    std = torch.exp(0.5 * logvar)
    logits = m2.decode(mu + 0.5 * std, y)

    terms = labelled_terms(m2, x, y)

    expected_recon = -Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    expected_kl = kl_divergence(Normal(mu, std), Normal(0.0, 1.0))
    torch.testing.assert_close(terms.recon, expected_recon)
    torch.testing.assert_close(terms.kl_z, expected_kl)
    torch.testing.assert_close(terms.kl_y, torch.full((5,), math.log(CLASSES)))
    torch.testing.assert_close(
        terms.negative_bound, expected_recon + expected_kl.sum(1) + math.log(CLASSES)
    )


def test_the_labelled_bound_decodes_a_sample_not_the_mean() -> None:
    m2 = _m2("mlp")
    x, y = _images(), torch.tensor([0, 1, 2, 3, 1])

    first, second = labelled_terms(m2, x, y), labelled_terms(m2, x, y)

    assert (first.recon != second.recon).all()
    torch.testing.assert_close(first.kl_z, second.kl_z, rtol=0, atol=0)


# The unlabelled bound computes each image's features once for every label and, where the
# classifier reads the encoder's convs, for q(y|x) too: the loop below computes them anew.
@pytest.mark.parametrize(
    ("network", "shared_convs"), [("mlp", False), ("conv", False), ("conv", True)]
)
def test_unlabelled_bound_is_the_sum_over_labels_written_out(
    network: str, shared_convs: bool, fixed_noise: None
) -> None:
    m2 = _m2(network, "gaussian", shared_convs)
    x = _images()

    got = unlabelled_terms(m2, x)
    got_grads = torch.autograd.grad(got.negative_bound.sum(), list(m2.parameters()))

    q = torch.softmax(m2.classify(x), dim=1)
    recon, kl_z, bound = 0, 0, 0
    for c in range(CLASSES):
        terms = labelled_terms(m2, x, torch.full((5,), c))
        recon = recon + q[:, c] * terms.recon
        kl_z = kl_z + q[:, c, None] * terms.kl_z
        bound = bound + q[:, c] * terms.negative_bound
    bound = bound - Categorical(probs=q).entropy()
    expected_grads = torch.autograd.grad(bound.sum(), list(m2.parameters()))

    torch.testing.assert_close(got.recon, recon)
    torch.testing.assert_close(got.kl_z, kl_z)
    torch.testing.assert_close(got.negative_bound, bound)
    for got_grad, expected_grad in zip(got_grads, expected_grads, strict=True):
        # Sums in float32 of terms of thousands of nats: close relative to the largest entry.
        scale = expected_grad.abs().max().item()
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-4, atol=1e-4 * scale)


def test_a_uniform_classifier_leaves_the_mean_bound_over_labels(fixed_noise: None) -> None:
    m2 = _m2("mlp")
    _set_classifier_logits(m2, torch.zeros(CLASSES))
    x = _images()

    got = unlabelled_terms(m2, x)

    # H(q) = log K cancels −log p(y) = log K: KL(q(y|x) ‖ p(y)) is 0.
    each = [labelled_terms(m2, x, torch.full((5,), c)) for c in range(CLASSES)]
    mean_over_labels = sum(t.recon + t.kl_z.sum(1) for t in each) / CLASSES
    torch.testing.assert_close(got.kl_y, torch.zeros(5), rtol=0, atol=1e-6)
    torch.testing.assert_close(got.negative_bound, mean_over_labels)


def test_a_certain_classifier_leaves_the_labelled_bound_of_its_class(fixed_noise: None) -> None:
    m2 = _m2("conv")
    _set_classifier_logits(m2, torch.tensor([0.0, 0.0, 200.0, 0.0]))
    x = _images()

    got = unlabelled_terms(m2, x)

    labelled = labelled_terms(m2, x, torch.full((5,), 2))
    torch.testing.assert_close(got.kl_y, torch.full((5,), math.log(CLASSES)))
    torch.testing.assert_close(got.negative_bound, labelled.negative_bound)


def test_classification_loss_is_minus_log_q_of_the_label() -> None:
    m2 = _m2("mlp")
    x, y = _images(), torch.tensor([3, 0, 0, 2, 1])

    expected = -Categorical(logits=m2.classify(x)).log_prob(y)

    torch.testing.assert_close(classification_loss(m2.classify(x), y), expected)


def _terms(negative_bound: list[float]) -> M2Terms:
    """Terms whose negative bound is `negative_bound` (all in recon)."""
    recon = torch.tensor(negative_bound)
    return M2Terms(recon=recon, kl_z=torch.zeros(len(recon), 2), kl_y=torch.zeros(len(recon)))


def test_semi_supervised_loss_weighs_each_bound_by_its_share_of_the_data() -> None:
    labelled, unlabelled = _terms([100.0, 120.0]), _terms([90.0, 80.0, 70.0])
    classification = torch.tensor([2.0, 4.0])

    loss = semi_supervised_loss(labelled, classification, unlabelled, 0.25, alpha=0.5)

    assert loss.item() == pytest.approx(0.25 * 110 + 0.75 * 80 + 0.5 * 3)


def test_alpha_of_a_tenth_is_kingmas_objective_with_alpha_a_tenth_of_n() -> None:
    """Their code: each minibatch holds the labelled and unlabelled images in the data's
    proportion; the classification term of each labelled image is weighted by
    0.1·N_total/N_labelled and the summed objective divided by the images per minibatch."""
    n_labelled, n_unlabelled, minibatches = 100, 4900, 50
    n_total = n_labelled + n_unlabelled
    labelled = _terms((torch.rand(n_labelled // minibatches) * 100).tolist())
    unlabelled = _terms((torch.rand(n_unlabelled // minibatches) * 100).tolist())
    classification = torch.rand(n_labelled // minibatches) * 3

    weight = 0.1 * n_total / n_labelled
    summed = (
        labelled.negative_bound.sum()
        + weight * classification.sum()
        + unlabelled.negative_bound.sum()
    )
    theirs = summed * minibatches / n_total

    ours = semi_supervised_loss(
        labelled, classification, unlabelled, n_labelled / n_total, alpha=0.1
    )
    torch.testing.assert_close(ours, theirs)


def _semi_supervised_batch_loss(m2: M2VAE, alpha: float) -> torch.Tensor:
    x_labelled, y = _images(3), torch.tensor([0, 1, 3])
    labelled = labelled_terms(m2, x_labelled, y)
    classification = classification_loss(m2.classify(x_labelled), y)
    unlabelled = unlabelled_terms(m2, _images(6))
    return semi_supervised_loss(labelled, classification, unlabelled, 0.1, alpha)


@pytest.mark.parametrize("network", NETWORKS)
def test_gradients_reach_every_network(network: str) -> None:
    m2 = _m2(network, "gaussian")

    _semi_supervised_batch_loss(m2, alpha=0.1).backward()

    for name, parameter in m2.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name


def test_the_classifier_learns_from_unlabelled_images_and_from_labels_only_through_alpha() -> None:
    m2 = _m2("mlp")
    x, y = _images(), torch.tensor([0, 1, 2, 3, 1])
    classifier = list(m2.classifier.parameters())

    from_unlabelled = torch.autograd.grad(
        unlabelled_terms(m2, x).negative_bound.sum(), classifier, allow_unused=True
    )
    from_labelled = torch.autograd.grad(
        labelled_terms(m2, x, y).negative_bound.sum(), classifier, allow_unused=True
    )

    assert all(g is not None and g.abs().sum() > 0 for g in from_unlabelled)
    assert all(g is None for g in from_labelled)


@pytest.mark.parametrize("network", NETWORKS)
def test_terms_are_float32_and_finite_under_bf16_autocast(network: str) -> None:
    m2 = _m2(network, "gaussian")

    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_labelled, y = _images(3), torch.tensor([0, 1, 3])
        labelled = labelled_terms(m2, x_labelled, y)
        classification = classification_loss(m2.classify(x_labelled), y)
        unlabelled = unlabelled_terms(m2, _images(6))
        loss = semi_supervised_loss(labelled, classification, unlabelled, 0.1, 0.1)
    loss.backward()

    for terms in (labelled, unlabelled):
        for value in (terms.recon, terms.kl_z, terms.kl_y):
            assert value.dtype == torch.float32 and torch.isfinite(value).all()
    assert classification.dtype == torch.float32
    assert all(torch.isfinite(p.grad).all() for p in m2.parameters())


def test_sample_decodes_prior_draws_with_the_labels_asked_for() -> None:
    m2 = _m2("conv")
    labels = torch.tensor([2, 2, 0])

    samples = m2.sample(labels, generator=torch.Generator().manual_seed(7))

    z = torch.randn(3, LATENT, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(samples, torch.sigmoid(m2.decode(z, labels)))
    other_labels = m2.sample(torch.tensor([1, 3, 0]), generator=torch.Generator().manual_seed(7))
    assert (samples[:2] != other_labels[:2]).any() and torch.equal(samples[2], other_labels[2])


def test_unlabelled_terms_keep_the_classifiers_log_probabilities() -> None:
    m2 = _m2("mlp")
    x = _images()

    terms = unlabelled_terms(m2, x)

    torch.testing.assert_close(terms.log_q_y, torch.log_softmax(m2.classify(x), dim=1))
    assert labelled_terms(m2, x, torch.zeros(5, dtype=torch.long)).log_q_y is None


@pytest.mark.parametrize("network", NETWORKS)
def test_without_labels_the_code_and_the_reconstruction_are_at_the_predicted_class(
    network: str,
) -> None:
    m2 = _m2(network)
    x = _images()
    predicted = m2.classify(x).argmax(1)

    mu, logvar = m2.encode(x)

    expected_mu, expected_logvar = m2.encode(x, predicted)
    torch.testing.assert_close(mu, expected_mu)
    torch.testing.assert_close(logvar, expected_logvar)
    torch.testing.assert_close(m2.predict(x), predicted)
    torch.testing.assert_close(m2.reconstruct(x), torch.sigmoid(m2.decode(mu, predicted)))


def test_at_label_is_the_vae_of_z_at_one_class() -> None:
    m2 = _m2("conv")
    x, z = _images(3), torch.randn(3, LATENT)
    twos = torch.full((3,), 2)

    view = m2.at_label(2)

    for got, expected in zip(view.encode(x), m2.encode(x, twos), strict=True):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(view.decode(z), m2.decode(z, twos))
    assert view.latent_dim == LATENT and view.likelihood is m2.likelihood


def test_m2_log_likelihood_sums_each_class_s_importance_weighted_bound() -> None:
    m2 = _m2("mlp")
    x = _images().round()

    torch.manual_seed(3)
    got = m2_importance_weighted_log_likelihood(m2, x, k=7)

    torch.manual_seed(3)  # the same draws: one class after another
    per_class = torch.stack(
        [importance_weighted_log_likelihood(m2.at_label(y), x, 7) for y in range(CLASSES)]
    )
    torch.testing.assert_close(got, torch.logsumexp(per_class, 0) - math.log(CLASSES))


def test_m2_log_likelihood_is_at_least_the_unlabelled_bound() -> None:
    m2 = _m2("mlp")
    x = _images(200).round()

    log_px = m2_importance_weighted_log_likelihood(m2, x, k=50)

    # −U(x) is one draw of a looser bound: on average below log p(x)'s estimate.
    assert log_px.mean() > -unlabelled_terms(m2, x).negative_bound.mean()


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_started_at_the_mean_the_decoder_draws_each_channel_s_mean(
    network: str, likelihood: str
) -> None:
    m2 = build_m2((3, 16, 16), LATENT, CLASSES, network, [32], [4, 8], likelihood)
    output_layer = [layer for layer in m2.decoder if hasattr(layer, "bias")][-1]
    with torch.no_grad():
        output_layer.weight.zero_()  # the output is then its bias alone
    channel_means = torch.tensor([0.04, 0.5, 0.8])

    m2.start_at_mean(channel_means)

    drawn = m2.sample(torch.arange(CLASSES))
    expected = channel_means.view(1, 3, 1, 1).expand(CLASSES, 3, 16, 16)
    torch.testing.assert_close(drawn, expected)


@pytest.mark.parametrize("shared_convs", [False, True])
def test_shared_convs_let_every_images_bound_train_what_the_classifier_reads(
    shared_convs: bool,
) -> None:
    m2 = build_m2(
        (1, 16, 16), LATENT, CLASSES, "conv", [32], [4, 8], "bernoulli", 0.1, False, shared_convs
    )
    classifier_convs = m2.classifier[0][0] if shared_convs else m2.classifier[0]
    # The bound of a labelled image does not involve q(y|x): only through shared convs does it
    # reach the layers the classifier reads.
    labelled_terms(m2, _images(), torch.tensor([0, 1, 2, 3, 0])).negative_bound.sum().backward()

    assert (classifier_convs.weight is m2.encoder.features[0].weight) == shared_convs
    assert (classifier_convs.weight.grad is not None) == shared_convs
    separate = build_m2((1, 16, 16), LATENT, CLASSES, "conv", [32], [4, 8], "bernoulli")
    own_convs = sum(p.numel() for p in separate.classifier[:4].parameters())
    expected = sum(p.numel() for p in separate.parameters()) - own_convs * shared_convs
    assert sum(p.numel() for p in m2.parameters()) == expected
