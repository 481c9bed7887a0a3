"""A study over seeds: the jobs of a sweep that differ only by `seed`, reported as distributions.

One seed's number says little about an objective or a weight: Locatello et al. (2019) found the
spread over seeds about as large as the differences between objectives. So where a sweep
repeats a setting over seeds, the report adds a row per setting with the mean, the standard
deviation (n - 1), the minimum and the maximum of each test metric over its finished jobs.
"""

import statistics
from dataclasses import dataclass
from typing import Any

from betavae.lifecycle.layout import FINISHED, is_experiment_key
from betavae.lifecycle.records import Job
from betavae.sweeps.jobs import swept_keys
from betavae.sweeps.objectives import WEIGHT_KEYS, shown_weight
from betavae.sweeps.summary import METRIC_COLUMNS, NOT_KNOWN, measured_columns, shown

SEEDS_CSV = "summary_over_seeds.csv"
SEED = "seed"
# The weight column of a sweep over several objectives: each objective's own (β, γ, λ_od, C).
WEIGHT = "weight"
OBJECTIVE = "model.objective"
STATISTICS = ("mean", "sd", "min", "max")


@dataclass
class Setting:
    """The jobs of one setting, one per seed."""

    jobs: list[Job]

    @property
    def finished(self) -> list[Job]:
        return [job for job in self.jobs if job.status == FINISHED]

    def statistics(self, key: str) -> dict[str, float | None]:
        """Mean, sd, min and max of metrics.json's `key` over the finished jobs (sd needs two)."""
        values = [job.metrics[key] for job in self.finished if key in job.metrics]
        if not values:
            return dict.fromkeys(STATISTICS)
        sd = statistics.stdev(values) if len(values) > 1 else None
        return {"mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values)}


def settings_over_seeds(jobs: list[Job]) -> list[Setting]:
    """The jobs grouped by their experiment but the seed, in the order of each one's first job;
    empty where no setting was run with more than one seed (nothing to summarise)."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        experiment = {k: v for k, v in job.config.items() if is_experiment_key(k) and k != SEED}
        groups.setdefault(repr(sorted(experiment.items())), []).append(job)
    settings = [Setting(group) for group in groups.values()]
    return settings if any(len(setting.jobs) > 1 for setting in settings) else []


def setting_columns(jobs: list[Job]) -> list[str]:
    """The keys that tell settings apart: the swept ones but the seed; in a sweep over
    objectives, each one's own weight in one column instead of a column per weight key."""
    keys = [key for key in swept_keys(jobs) if key != SEED]
    if OBJECTIVE not in keys:
        return keys
    keys = [key for key in keys if key not in WEIGHT_KEYS]
    after = keys.index(OBJECTIVE) + 1
    return [*keys[:after], WEIGHT, *keys[after:]]


def _metric_columns(jobs: list[Job]) -> dict[str, str]:
    """The test losses and the disentanglement metrics the jobs measured, by metrics.json key."""
    losses = {column: key for column, key in METRIC_COLUMNS.items() if key.startswith("test/")}
    return losses | measured_columns(jobs)


def _labels(setting: Setting, columns: list[str]) -> dict[str, Any]:
    first = setting.jobs[0]
    return {key: shown_weight(first) if key == WEIGHT else first.config.get(key) for key in columns}


def seed_rows(jobs: list[Job], settings: list[Setting]) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and one row per setting, every statistic a column of its own (for a CSV)."""
    columns, metrics = setting_columns(jobs), _metric_columns(jobs)
    header = [*columns, "seeds", "finished"]
    header += [f"{metric}_{stat}" for metric in metrics for stat in STATISTICS]
    rows = []
    for setting in settings:
        row = _labels(setting, columns) | {
            "seeds": len(setting.jobs),
            "finished": len(setting.finished),
        }
        for metric, key in metrics.items():
            row |= {f"{metric}_{stat}": v for stat, v in setting.statistics(key).items()}
        rows.append(row)
    return header, rows


def seed_cells(jobs: list[Job], settings: list[Setting]) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and one row per setting, each metric in one cell, `mean ± sd (min–max)`."""
    columns, metrics = setting_columns(jobs), _metric_columns(jobs)
    rows = []
    for setting in settings:
        row = _labels(setting, columns) | {
            "seeds": f"{len(setting.finished)} of {len(setting.jobs)}"
        }
        row |= {metric: _cell(metric, setting.statistics(key)) for metric, key in metrics.items()}
        rows.append(row)
    return [*columns, "seeds", *metrics], rows


def _cell(metric: str, stats: dict[str, float | None]) -> str:
    mean, sd, low, high = (stats[stat] for stat in STATISTICS)
    if mean is None:
        return NOT_KNOWN
    if sd is None:  # one seed finished
        return shown(metric, mean)
    return (
        f"{shown(metric, mean)} ± {shown(metric, sd)} ({shown(metric, low)}–{shown(metric, high)})"
    )
