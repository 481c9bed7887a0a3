"""Shared fixtures: a session-wide data cache, and composing the real configs."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data cache for the whole session, so sprites are rendered once per size."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def compose_train() -> Iterator:
    """Compose `conf/train.yaml` with overrides through Hydra's compose API."""
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):

        def _compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
            return compose("train", overrides=overrides, return_hydra_config=return_hydra_config)

        yield _compose
    GlobalHydra.instance().clear()
