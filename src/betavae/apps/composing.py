"""The training config composed from overrides outside of a run, with Hydra's compose API: for
the planner to compare a run's saved config with, and for printed commands to reproduce one.

Inside a running job Hydra is initialised already, and its compose API works there; before
Hydra starts (planning a command line), a Hydra of its own is set up for the call.
"""

from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from betavae.config.flat import flatten
from betavae.config.paths import config_dir

CONFIG_NAME = "train"


def compose_train(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """conf/train.yaml with `overrides`; with Hydra's own settings (run and sweep directories,
    launcher) under `hydra` if `with_hydra`."""
    if GlobalHydra.instance().is_initialized():
        return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)


def composed_settings(overrides: list[str]) -> dict[str, Any]:
    """What `overrides` compose, resolved, as `{"dotted.key": value}`."""
    return flatten(OmegaConf.to_container(compose_train(overrides), resolve=True))
