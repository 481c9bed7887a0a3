"""Helpers for tests that run the real console scripts."""

import os
import subprocess
import sys
import time
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
