"""The jobs of a sweep directory, read back from the files each one wrote."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from betavae.config.flat import flatten
from betavae.errors import UserError
from betavae.evaluation.mig_keys import MIG
from betavae.training.run_dir import (
    CONFIG_FILE,
    FINISHED,
    LAST_CHECKPOINT,
    METRICS_FILE,
    read_metrics,
)

# Hydra's record of the composed config, written when a job starts, so every job that started
# has one, finished or not.
HYDRA_CONFIG = ".hydra/config.yaml"
# Written by `betavae-eval` into the run directory; it holds the active-unit count.
EVAL_METRICS = "eval/metrics.json"
# Always shown, even when a sweep keeps them fixed: they label the rate-distortion points.
MODEL_KEYS = ("model.latent_dim", "model.beta")
_NOT_SWEPT = ("resume",)


@dataclass
class Job:
    directory: Path
    config: dict[str, Any]
    metrics: dict[str, Any] | None

    @property
    def number(self) -> int:
        prefix = self.directory.name.split("_", 1)[0]
        return int(prefix) if prefix.isdigit() else -1

    @property
    def status(self) -> str:
        """finished, diverged, or unfinished (stopped, or running now)."""
        if self.metrics is not None:
            return self.metrics.get("status", FINISHED)
        has_checkpoint = (self.directory / LAST_CHECKPOINT).is_file()
        return "unfinished (has last.ckpt)" if has_checkpoint else "unfinished (no checkpoint)"

    @property
    def active_units(self) -> int | None:
        path = self.directory / EVAL_METRICS
        return json.loads(path.read_text()).get("active_units") if path.is_file() else None


def read_sweep(sweep_dir: Path) -> list[Job]:
    """Every job directory under `sweep_dir`, in job-number order."""
    if not sweep_dir.is_dir():
        raise UserError(
            f"{sweep_dir}: no such directory; pass a sweep directory, e.g. multirun/<date>/<time>"
        )
    jobs = [read_job(path) for path in sweep_dir.iterdir() if (path / HYDRA_CONFIG).is_file()]
    if not jobs:
        raise UserError(
            f"{sweep_dir}: not a sweep directory (no job directories with {HYDRA_CONFIG}); "
            "pass the directory betavae-train -m made, e.g. multirun/<date>/<time>"
        )
    return sorted(jobs, key=lambda job: (job.number, job.directory.name))


def read_job(run_dir: Path) -> Job:
    """One run directory (a sweep's job or a single run) as its config and final metrics."""
    ended = (run_dir / METRICS_FILE).is_file()
    return Job(run_dir, _config(run_dir), read_metrics(run_dir) if ended else None)


def has_mig(jobs: list[Job]) -> bool:
    """Whether any job measured MIG (only runs on data with known factors do)."""
    return any(job.metrics is not None and MIG in job.metrics for job in jobs)


def swept_keys(jobs: list[Job]) -> list[str]:
    """The model keys, then every config key whose value differs between jobs."""
    keys = sorted({key for job in jobs for key in job.config})
    varying = [
        key
        for key in keys
        if key not in MODEL_KEYS
        and key not in _NOT_SWEPT
        and len({repr(job.config.get(key)) for job in jobs}) > 1
    ]
    return [*MODEL_KEYS, *varying]


def _config(job_dir: Path) -> dict[str, Any]:
    """The run's own resolved config.yaml; Hydra's record for a job stopped before writing it.

    Hydra's record is rewritten whenever the sweep is run again, so it is only the fallback.
    """
    if (job_dir / CONFIG_FILE).is_file():
        return flatten(OmegaConf.to_container(OmegaConf.load(job_dir / CONFIG_FILE)))
    composed = OmegaConf.load(job_dir / HYDRA_CONFIG)
    try:
        return flatten(OmegaConf.to_container(composed, resolve=True))
    except OmegaConfBaseException:
        return flatten(OmegaConf.to_container(composed))
