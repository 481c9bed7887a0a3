"""VAEModule options that change how a step runs but must not change what it computes."""

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
