"""Helpers for tests that run the real console scripts."""

import os
import subprocess
import sys
import time
from pathlib import Path

from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from betavae.training.tensorboard_hparams import HPARAMS_FILE

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


def event_file_pids(run_dir: Path) -> set[str]:
    """The processes that wrote a run's curves (events.out.tfevents.<time>.<host>.<pid>.<n>)."""
    files = run_dir.glob("events.out.tfevents.*")
    return {path.name.split(".")[-2] for path in files if path.name != HPARAMS_FILE}


def tensorboard_run(run_dir: Path) -> EventAccumulator:
    """A run's TensorBoard data as TensorBoard's server reads it, nothing sampled away: scalars
    and images as tensors, with the metadata (plugin, description) of each tag."""
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    """(step, value) of each point of a scalar tag."""
    return [(event.step, make_ndarray(event.tensor_proto).item()) for event in events.Tensors(tag)]


# hydra/launcher=slurm on the local cluster's CPU-only node (tests' slurm_cluster fixture).
SLURM_CPU = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]

_SLURM_ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "SIGNALING")


def slurm_job(job_id: str, timeout: float = 60) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, ExitCode, Restarts, ...) once the job has ended
    (its result file can appear before SLURM has seen its process exit); slurmctld keeps an
    ended job for MinJobAge, 5 minutes."""
    deadline = time.monotonic() + timeout
    while True:
        shown = subprocess.run(
            ["scontrol", "--oneliner", "show", "job", job_id], capture_output=True, text=True
        )
        assert shown.returncode == 0, shown.stderr
        job = dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)
        if job["JobState"] not in _SLURM_ACTIVE or time.monotonic() > deadline:
            return job
        time.sleep(0.2)
