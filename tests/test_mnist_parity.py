"""betavae on `data=mnist` trains as well as the classic plain-PyTorch VAE loop.

The reference is written here independently, the way pytorch/examples `vae/main.py` does it
(its own model, loss and loop over torchvision's MNIST), so a mistake in betavae's maths or
training loop would show up as a gap between the two test ELBOs. Both train on the same
number of images (betavae holds 10% of the training file out for validation) and for enough
epochs that seed noise, several nats early on, has settled.
"""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import run_cli
from torch import Tensor, nn
from torchvision import datasets

from betavae.data import render_sprites
from betavae.data.idx import write_mnist_raw

pytestmark = pytest.mark.slow

EPOCHS = 12
VAL_FRACTION = 0.1
NUM_TRAIN, NUM_TEST = 6000, 1000


class ClassicVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.fc4(F.relu(self.fc3(z))), mu, logvar


def classic_loss(logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Summed over the batch, as in the classic example."""
    bce = F.binary_cross_entropy_with_logits(logits, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def classic_test_elbo(root: Path) -> float:
    """The classic loop over torchvision's MNIST, its images scaled to [0, 1] as ToTensor does
    (whole tensors rather than a DataLoader of single images: the same batches of the same
    floats, in a tenth of the time)."""
    torch.manual_seed(0)
    train = datasets.MNIST(str(root), train=True, download=False).data.unsqueeze(1) / 255
    kept = torch.randperm(len(train))[: round(len(train) * (1 - VAL_FRACTION))]
    train = train[kept]
    test = datasets.MNIST(str(root), train=False, download=False).data.unsqueeze(1) / 255
    model = ClassicVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(train)).split(128):
            x = train[batch]
            optimizer.zero_grad()
            logits, mu, logvar = model(x)
            (classic_loss(logits, x, mu, logvar) / len(x)).backward()
            optimizer.step()
    total = 0.0
    with torch.no_grad():
        for x in test.split(500):
            logits, mu, logvar = model(x)
            total += classic_loss(logits, x, mu, logvar).item()
    return total / len(test)


def write_sprites_as_mnist(root: Path) -> None:
    images, factors = render_sprites(NUM_TRAIN + NUM_TEST, image_size=28, seed=7)
    pixels = (images[:, 0] * 255).to(torch.uint8)
    labels = factors[:, 0].to(torch.uint8)
    write_mnist_raw(
        root / "MNIST" / "raw",
        train=(pixels[:NUM_TRAIN], labels[:NUM_TRAIN]),
        test=(pixels[NUM_TRAIN:], labels[NUM_TRAIN:]),
    )


def test_test_elbo_is_within_two_nats_of_the_classic_loop(tmp_path, data_dir):
    root = tmp_path / "mnist"
    write_sprites_as_mnist(root)
    args = [
        "data=mnist",
        f"data.data_dir={root}",
        "data.num_workers=0",
        "data.batch_size=128",
        f"data.val_fraction={VAL_FRACTION}",
        "model=mlp",
        "model.latent_dim=20",
        "model.beta=1",
        f"trainer.max_epochs={EPOCHS}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]

    result = run_cli(args, cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 0, result.stderr
    (metrics_file,) = (tmp_path / "outputs").glob("*/*/metrics.json")
    betavae_elbo = json.loads(metrics_file.read_text())["test/elbo"]
    assert betavae_elbo == pytest.approx(classic_test_elbo(root), abs=2.0)
