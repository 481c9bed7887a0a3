"""Mixed precision: bf16-mixed through betavae-train, and fp16's GradScaler across a resume."""

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from helpers import TINY_RUN, run_cli, scalars, tensorboard_run
from lightning.pytorch.plugins import MixedPrecision
from omegaconf import OmegaConf

from betavae.config.schema import CallbacksConfig, ImagesConfig
from betavae.data import SpritesDataModule
from betavae.lifecycle.checkpoints import AtomicCheckpointIO, RunCheckpoints
from betavae.training.callbacks import build_callbacks
from betavae.training.module import VAEModule
from betavae.training.tensorboard import RunLogger

pytestmark = pytest.mark.slow


CLIPPING = "trainer.gradient_clip_val=1.0"


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        [CLIPPING],
        ["model.objective=factor_vae", CLIPPING],
        ["model.objective=dip_vae_ii"],
        ["model.objective=m2", "data.labels_per_class=5"],
    ],
    ids=["beta", "beta-clipping", "factor_vae-clipping", "dip_vae_ii", "m2"],
)
def test_bf16_mixed_run_has_finite_losses(tmp_path, data_dir, overrides):
    # Gradient clipping needs an Adam that Lightning can clip under mixed precision; FactorVAE
    # clips its two networks apart, after the same unscaling.
    args = [*TINY_RUN, "trainer.precision=bf16-mixed", "trainer.max_epochs=2", *overrides]
    result = run_cli(args, tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    assert ", cpu, bf16-mixed, in outputs/" in result.stdout
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert "Using bfloat16 Automatic Mixed Precision (AMP)" in (run_dir / "train.log").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith(("val/", "test/")))
    events = tensorboard_run(run_dir)
    curves = [tag for tag in events.Tags()["tensors"] if tag.startswith("train/")]
    assert "train/loss" in curves  # and the objective's own terms, train/tc, train/dip, ...
    for tag in curves:
        assert all(math.isfinite(value) for _, value in scalars(events, tag)), tag


class _ScalerAtStart(pl.Callback):
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.state = trainer.precision_plugin.scaler.state_dict()


def _fp16_fit(
    run_dir: Path,
    data_dir: Path,
    epochs: int,
    ckpt_path: Path | None,
    gradient_clip_val: float | None = None,
    objective: str = "beta",
    train_batches: int | None = None,
) -> dict:
    """fp16 autocast with a GradScaler (Lightning's trainer.precision=16-mixed needs a GPU, so
    the plugin is given directly); returns the scaler's state as training starts."""
    pl.seed_everything(0, verbose=False)
    images = ImagesConfig(every_n_epochs=1, num_reconstructions=4, num_samples=4)
    callbacks_config = OmegaConf.structured(CallbacksConfig(images=images))
    probe = _ScalerAtStart()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        limit_train_batches=train_batches,
        gradient_clip_val=gradient_clip_val,
        plugins=[MixedPrecision("16-mixed", "cpu"), AtomicCheckpointIO()],
        # The run's logger, as betavae-train has: the image callbacks draw for it alone.
        logger=RunLogger(str(run_dir)),
        callbacks=[
            *build_callbacks(callbacks_config, progress_bar=False),
            RunCheckpoints(run_dir / "checkpoints"),
            probe,
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run_dir,
    )
    datamodule = SpritesDataModule(str(data_dir), num_examples=600, image_size=32, batch_size=64)
    module = VAEModule(image_shape=[1, 32, 32], latent_dim=4, hidden_dims=[64], objective=objective)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    assert math.isfinite(float(trainer.callback_metrics["val/elbo"]))
    return probe.state


def test_fp16_grad_scaler_state_survives_resume(tmp_path, data_dir):
    _fp16_fit(tmp_path, data_dir, epochs=1, ckpt_path=None)
    last = tmp_path / "checkpoints/last.ckpt"
    saved = torch.load(last, weights_only=True)["MixedPrecision"]

    resumed = _fp16_fit(tmp_path, data_dir, epochs=2, ckpt_path=last)

    # fp16 overflowed in the first steps, so the scale was lowered from its start at 2**16;
    # the resumed scaler starts where the checkpoint left it.
    assert saved["scale"] < 2.0**16
    assert resumed == saved


@pytest.mark.parametrize("objective", ["beta", "factor_vae"])
def test_fp16_with_gradient_clipping_trains(tmp_path, data_dir, objective):
    # The fused Adam kernel unscales fp16 gradients itself, too late for Lightning to clip
    # them; the module must pick an implementation Lightning can clip with (for FactorVAE,
    # one GradScaler and the discriminator's own parameter group). Two steps: fp16 matrix
    # products are slow on a CPU, FactorVAE's discriminator's six layers of 1000 most of all.
    _fp16_fit(tmp_path, data_dir, 1, None, 1.0, objective, train_batches=2)
