"""Opening a trained model: `run=<run dir or .ckpt>` to the model, its run and its data.

One way in for every app that uses a trained model, so a run directory, a checkpoint path and
every way either can be wrong are handled, and reported, the same way everywhere.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from betavae.config.schema import validate_data
from betavae.data.base import BaseDataModule
from betavae.errors import UserError
from betavae.lifecycle.layout import CONFIG_FILE, locate_run
from betavae.training.checkpoint_fit import checkpoint_hparams
from betavae.training.model_kinds import Module, load_module
from betavae.user_paths import user_path
from betavae.vae import M2VAE, VAE


@dataclass
class LoadedRun:
    run_dir: Path
    checkpoint: Path
    module: Module
    """`VAEModule`, or `M2Module` for a run of model.objective=m2."""
    config: DictConfig
    """The run's saved, resolved config (`<run>/config.yaml`)."""

    @property
    def vae(self) -> VAE | M2VAE:
        return self.module.vae

    def data_config(self, data: DictConfig | None = None) -> DictConfig:
        """`data` where it names a data set (has a `_target_`), else the run's own data with
        `data`'s keys changed."""
        if data is None or "_target_" not in data:
            return OmegaConf.merge(self.config.data, data or {})
        return data

    def datamodule(self, data: DictConfig | None = None) -> BaseDataModule:
        """The data of `data_config(data)`, set up and checked to fit the model."""
        data = self.data_config(data)
        validate_data(data)
        datamodule = instantiate(data)
        wanted = tuple(self.module.hparams.image_shape)
        if tuple(datamodule.image_shape) != wanted:
            raise UserError(
                f"the data's images are {list(datamodule.image_shape)} (C, H, W) but the model "
                f"takes {list(wanted)}; set data.image_size / data.channels to match"
            )
        datamodule.prepare_data()
        datamodule.setup("test")
        return datamodule


def load_run(run: str | None, key: str = "run") -> LoadedRun:
    """The model of a run directory (its best checkpoint) or of a checkpoint inside a run.

    A checkpoint must sit in its run's `checkpoints/` folder, since the run's config (above it)
    says which data the model was trained on.
    """
    run_dir, checkpoint = locate_run(run, key)
    path = user_path(run)
    hparams = checkpoint_hparams(checkpoint, key)
    try:
        config = OmegaConf.load(run_dir / CONFIG_FILE)
        module = load_module(checkpoint, hparams)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{key}={path}: the run cannot be loaded ({reason})") from error
    if torch.cuda.is_available():
        module = module.cuda()
    return LoadedRun(run_dir, checkpoint, module.eval(), config)
