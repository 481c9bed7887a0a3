"""Helpers for tests that run the real console scripts."""

import os
import subprocess
import sys
from pathlib import Path

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


def console_script(name: str) -> str:
    """The installed entry point next to this interpreter (works without an activated venv)."""
    return str(Path(sys.executable).parent / name)


def run_cli(
    args: list[str], cwd: Path, data_dir: Path, timeout: float = 600, script: str = "betavae-train"
) -> subprocess.CompletedProcess:
    env = {**os.environ, "BETAVAE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [console_script(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def event_file_pids(tensorboard_dir: Path) -> set[str]:
    """The processes that wrote a TensorBoard dir (events.out.tfevents.<time>.<host>.<pid>.<n>)."""
    return {path.name.split(".")[-2] for path in tensorboard_dir.glob("events.out.tfevents.*")}
