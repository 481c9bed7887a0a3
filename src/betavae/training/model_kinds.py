"""Which LightningModule a run trains and a checkpoint holds: `VAEModule`, or `M2Module` for
model.objective=m2. The one place that knows both, for the pipeline and for `loading`."""

import inspect
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from betavae.data.base import BaseDataModule
from betavae.training.m2_module import M2Module
from betavae.training.module import VAEModule

Module = VAEModule | M2Module


def module_class(objective: str) -> type[Module]:
    return M2Module if objective == "m2" else VAEModule


def build_module(model: DictConfig, datamodule: BaseDataModule) -> Module:
    """The module of a run's model config for its data (set up: M2 counts its classes). Each
    class takes the keys of the config it uses; the others belong to other objectives."""
    settings: dict[str, Any] = OmegaConf.to_container(model)  # type: ignore[assignment]
    cls = module_class(settings["objective"])
    accepted = inspect.signature(cls).parameters
    arguments = {key: value for key, value in settings.items() if key in accepted}
    if cls is M2Module:
        arguments["num_classes"] = datamodule.num_classes
    return cls(image_shape=datamodule.image_shape, **arguments)


def load_module(checkpoint: Path, hparams: dict[str, Any]) -> Module:
    """The module saved in `checkpoint`, whose hyper-parameters are `hparams`, on the CPU."""
    cls = module_class(hparams.get("objective", "beta"))
    return cls.load_from_checkpoint(checkpoint, map_location="cpu")
