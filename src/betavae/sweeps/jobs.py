"""What the sweep report reads of each job beyond its config and metrics."""

import json
from typing import Any

from betavae.evaluation.mig_keys import MIG
from betavae.lifecycle.records import Job

# Written by `betavae-eval` into the run directory; it holds the active-unit count.
EVAL_METRICS = "eval/metrics.json"
# Written by `betavae-eval labels_per_class=N` (with any other options) on the test split.
FEW_LABEL_EVALS = "eval/metrics-test*labels_per_class=*.json"
# Always shown, even when a sweep keeps them fixed: they label the rate-distortion points.
MODEL_KEYS = ("model.latent_dim", "model.beta")
_NOT_SWEPT = ("resume",)


def active_units(job: Job) -> int | None:
    path = job.directory / EVAL_METRICS
    return json.loads(path.read_text()).get("active_units") if path.is_file() else None


def few_label_probes(job: Job) -> dict[int, dict[str, Any]]:
    """The few-label probes of each N that `betavae-eval labels_per_class=N` measured on the
    job's test split (one evaluation per N: other options do not change them)."""
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(job.directory.glob(FEW_LABEL_EVALS)):
        metrics = json.loads(path.read_text())
        found.setdefault(metrics["labels_per_class"], metrics)
    return found


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
