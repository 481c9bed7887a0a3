"""Shared helpers: composing the real configs, and running the real console script."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas

# Small, fast settings for runs that only need to exercise the machinery.
TINY_RUN = [
    "data.num_examples=600",
    "data.image_size=32",
    "data.batch_size=64",
    "model.hidden_dims=[64]",
    "model.latent_dim=4",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=2",
]


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

        def _compose(overrides: list[str]) -> DictConfig:
            return compose("train", overrides=overrides)

        yield _compose
    GlobalHydra.instance().clear()


def console_script(name: str) -> str:
    """The installed entry point next to this interpreter (works without an activated venv)."""
    return str(Path(sys.executable).parent / name)


def run_cli(
    args: list[str], cwd: Path, data_dir: Path, timeout: float = 600
) -> subprocess.CompletedProcess:
    env = {**os.environ, "BETAVAE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [console_script("betavae-train"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
