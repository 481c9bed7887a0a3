"""VAEModule options that change how a step runs but must not change what it computes."""

import pytest
import torch

from betavae.training.module import VAEModule


def _conv_module(channels_last: bool) -> VAEModule:
    torch.manual_seed(0)
    return VAEModule(
        image_shape=[1, 32, 32],
        network="conv",
        latent_dim=4,
        hidden_dims=[32],
        channels=[8, 16],
        channels_last=channels_last,
    )


def test_channels_last_stores_nhwc_weights_and_computes_the_same_loss_and_gradients():
    plain, nhwc = _conv_module(False), _conv_module(True)
    images = (torch.rand(8, 1, 32, 32) > 0.5).float()

    losses, gradients = [], []
    for module in (plain, nhwc):
        torch.manual_seed(1)  # the same ε for the reparameterised sample
        loss = module._terms((images, torch.zeros(8))).loss(1.0)
        loss.backward()
        losses.append(loss.detach())
        gradients.append([p.grad for p in module.parameters()])

    convs = [
        m for m in nhwc.vae.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    torch.testing.assert_close(losses[1], losses[0])
    for nhwc_grad, plain_grad in zip(gradients[1], gradients[0], strict=True):
        torch.testing.assert_close(nhwc_grad, plain_grad, rtol=1e-4, atol=1e-5)


def _grad_norm(params: list[torch.nn.Parameter]) -> float:
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()


def test_factor_vae_clips_the_vae_and_its_discriminator_each_by_its_own_norm():
    module = VAEModule(image_shape=[1, 8, 8], latent_dim=2, hidden_dims=[4], objective="factor_vae")
    vae, critic = list(module.vae.parameters()), list(module.discriminator.parameters())
    optimizer = torch.optim.SGD([{"params": vae}, {"params": critic}], lr=0.0)
    for params, value in ((vae, 1e-3), (critic, 1.0)):
        for p in params:
            p.grad = torch.full_like(p, value)
    vae_norm = _grad_norm(vae)

    module.configure_gradient_clipping(optimizer, gradient_clip_val=1.0)

    # The discriminator's norm (about 2,240) is cut to 1; the VAE's (< 1) is left as it was,
    # where one norm over both would have cut it 2,240-fold too.
    assert _grad_norm(critic) == pytest.approx(1.0, rel=1e-3)  # float32 sums of 5M squares
    assert _grad_norm(vae) == pytest.approx(vae_norm, rel=1e-6)


@pytest.mark.parametrize(
    ("objective", "lambda_d", "expected_lambda_d"),
    [("dip_vae_i", None, 30.0), ("dip_vae_ii", None, 3.0), ("dip_vae_i", 0.5, 0.5)],
)
def test_dip_objectives_add_their_penalty_to_the_elbo(objective, lambda_d, expected_lambda_d):
    module = VAEModule(
        image_shape=[1, 8, 8],
        latent_dim=3,
        hidden_dims=[16],
        objective=objective,
        dip_lambda_od=3.0,
        dip_lambda_d=lambda_d,
    )
    terms = module._terms((torch.rand(16, 1, 8, 8), torch.zeros(16)))

    loss, logged = module.objective(terms)

    if objective == "dip_vae_i":
        cov = torch.cov(terms.mu.T, correction=0)
    else:  # the law of total covariance: Cov[z] = Cov[μ] + E[diag σ²]
        cov = torch.cov(terms.mu.T, correction=0) + terms.logvar.exp().mean(0).diag()
    off_diagonal = (cov - cov.diag().diag()).pow(2).sum()
    expected = 3.0 * off_diagonal + expected_lambda_d * (cov.diag() - 1).pow(2).sum()
    torch.testing.assert_close(logged["dip"], expected)
    torch.testing.assert_close(loss, terms.elbo + expected)
