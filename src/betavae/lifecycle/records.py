"""Runs read back from the files they wrote: a run's config and result, a sweep's jobs."""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from betavae.config.flat import flatten
from betavae.errors import UserError
from betavae.lifecycle.layout import (
    CONFIG_FILE,
    FINISHED,
    HYDRA_CONFIG,
    LAST_CHECKPOINT,
    METRICS_FILE,
    SWEEP_RECORD,
    read_metrics,
)


@dataclass
class Job:
    """One run directory (a sweep's job or a single run): its flat config and final metrics."""

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


def read_sweep(sweep_dir: Path) -> list[Job]:
    """Every job directory under `sweep_dir` (every one that started has Hydra's record), in
    job-number order."""
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


def planned_jobs(sweep_dir: Path) -> int | None:
    """How many jobs the sweep's command makes: the product of the numbers of values of its
    keys, as Hydra's basic sweeper combines its config's `hydra.sweeper.params` and the command
    line's overrides (multirun.yaml). None where that is not known: no record, or a sweeper
    that chooses its jobs as it goes (Optuna)."""
    record = sweep_dir / SWEEP_RECORD
    if not record.is_file():
        return None
    hydra = OmegaConf.load(record).hydra
    if not str(hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return None
    params = [f"{key}={value}" for key, value in (hydra.sweeper.get("params") or {}).items()]
    try:
        overrides = OverridesParser.create().parse_overrides([*params, *hydra.overrides.task])
        values = {
            o.get_key_element(): len(list(o.sweep_iterator())) if o.is_sweep_override() else 1
            for o in overrides
        }
    except HydraException:  # e.g. a glob over a config group, which needs the config's files
        return None
    return math.prod(values.values())


def read_job(run_dir: Path) -> Job:
    ended = (run_dir / METRICS_FILE).is_file()
    return Job(run_dir, _config(run_dir), read_metrics(run_dir) if ended else None)


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
