"""TensorBoard's HPARAMS entries: a session per run and, for a sweep, the experiment comparing
its jobs, written with the hparams plugin's own protos.

TensorBoard reads a run's settings from its `_hparams_/session_start_info` summary, and the
HPARAMS columns (names, domains, which ones differ) from the first `_hparams_/experiment`
summary it finds under `--logdir`. Each run keeps both in one small event file, replaced whole
whenever it changes: TensorBoard keeps the first summary of a tag it reads, so the settings of
a resumed run (more epochs) must replace the old ones rather than follow them.

A single run writes its session alone, so that under `--logdir outputs` TensorBoard derives the
columns from every run's session. A sweep job also writes the sweep's experiment, into every
job of the sweep, identical everywhere: jobs run one after another, in worker processes or on
other machines (SLURM), and may be continued later (resume=auto, resume=<job>), so whichever
job changes what differs last leaves every copy right. The experiment lists every setting of
every job, with the values the sweep's command will give it before those jobs start.
"""

import os
import socket
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import QuotedString, ValueType
from hydra.utils import get_class
from omegaconf import OmegaConf
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.record_writer import RecordWriter

from betavae.evaluation.disentanglement_names import DISENTANGLEMENT_SCORES, test_key
from betavae.lifecycle.layout import CONFIG_FILE, HYDRA_CONFIG, METRICS_FILE
from betavae.lifecycle.records import Job, read_job, read_sweep
from betavae.training.descriptions import describe, hparams_metrics

# "tfevents" in the name is what makes TensorBoard read a file.
HPARAMS_FILE = "events.out.tfevents.hparams"
# Settings of how a run is started, saved or watched, not of what it trains.
_NOT_HPARAMS = (
    "resume",
    "ckpt_path",
    "optimized_metric",
    "paths.",
    "logger.",
    "callbacks.",
    "trainer.enable_progress_bar",
    "data.data_dir",
    "evaluation.",
)
# The HPARAMS filter offers a checkbox per value below this many values, and a regular
# expression, which cannot match a number, from there on: many numbers get an interval instead.
_MAX_CHECKBOXES = 10
_SWEEP_VALUES = (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP, ValueType.RANGE_SWEEP)
_TYPES = {
    bool: api_pb2.DATA_TYPE_BOOL,
    float: api_pb2.DATA_TYPE_FLOAT64,
    str: api_pb2.DATA_TYPE_STRING,
}

Value = bool | int | float | str
TEST_METRICS = "evaluation.test_metrics"


def record_hparams(run_dir: Path, sweep_dir: Path | None) -> None:
    """Write the HPARAMS entry of a run, or of every job of its sweep (`sweep_dir`)."""
    if sweep_dir is None:
        job = read_job(run_dir)
        _write(run_dir, _session(job), _step(job))
        return
    jobs = read_sweep(sweep_dir)
    experiment = _experiment(jobs, _planned_values(sweep_dir))
    for job in jobs:
        try:
            _write(job.directory, [experiment, *_session(job)], _step(job))
        except FileNotFoundError:
            # Another job's directory, removed because its start failed.
            if job.directory.resolve() == run_dir.resolve():
                raise


def _step(job: Job) -> int:
    """The step of a run's entry: its last, where it has ended (its test metrics' step)."""
    return (job.metrics or {}).get("global_step", 0)


def hparam_values(config: dict[str, Any]) -> dict[str, Value]:
    """A flat config as hyper-parameter values; lists and null as typed on the command line."""
    return {key: _value(value) for key, value in config.items() if not key.startswith(_NOT_HPARAMS)}


def _value(value: Any) -> Value:
    if isinstance(value, bool | int | float | str):
        return value
    return "null" if value is None else str(value)


def _session(job: Job) -> list[Summary]:
    """The run's settings, its end, and its test metrics as scalars: what HPARAMS shows of
    them is the last value of a scalar of their tag in the run."""
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=_started(job.directory))
    for key, value in hparam_values(job.config).items():
        proto = start.hparams[key]
        if isinstance(value, bool):
            proto.bool_value = value
        elif isinstance(value, str):
            proto.string_value = value
        else:
            proto.number_value = value
    summaries = [_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start)]
    if job.metrics is not None:
        finished = job.metrics.get("status", "finished") == "finished"
        end = plugin_data_pb2.SessionEndInfo(
            status=api_pb2.STATUS_SUCCESS if finished else api_pb2.STATUS_FAILURE,
            end_time_secs=(job.directory / METRICS_FILE).stat().st_mtime,
        )
        summaries.append(_summary(metadata.SESSION_END_INFO_TAG, session_end_info=end))
        tags = [test_key(name) for name in DISENTANGLEMENT_SCORES]
        summaries += [
            scalar_pb(tag, job.metrics[tag], description=describe(tag))
            for tag in tags
            if tag in job.metrics
        ]
    return summaries


def _started(run_dir: Path) -> float:
    """When the run (or this attempt of it) was set up: Hydra's record, else its config.yaml."""
    record = run_dir / HYDRA_CONFIG
    return (record if record.is_file() else run_dir / CONFIG_FILE).stat().st_mtime


def _experiment(jobs: list[Job], planned: dict[str, list[Value]]) -> Summary:
    values: dict[str, list[Value]] = defaultdict(list)
    for job in jobs:
        for key, value in hparam_values(job.config).items():
            values[key].append(value)
    hparams = [
        _hparam_info(key, [*values[key], *planned.get(key, [])], len(values[key]) == len(jobs))
        for key in sorted(values)
    ]
    factors = [job for job in jobs if _has_factors(job)]
    # Runs from before evaluation.test_metrics measured the MIG alone.
    tests = {name for job in factors for name in job.config.get(TEST_METRICS, ["mig"])}
    metrics = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(tag=tag), display_name=tag, description=describe(tag)
        )
        for tag in hparams_metrics(bool(factors), tests, any(_is_m2(job) for job in jobs))
    ]
    experiment = api_pb2.Experiment(
        hparam_infos=hparams,
        metric_infos=metrics,
        time_created_secs=min(_started(job.directory) for job in jobs),
    )
    return _summary(metadata.EXPERIMENT_TAG, experiment=experiment)


def _has_factors(job: Job) -> bool:
    """Whether a job's data has generative factors, and so a val/mig curve and test metrics."""
    target = job.config.get("data._target_")
    return target is not None and hasattr(get_class(target), "ground_truth")


def _is_m2(job: Job) -> bool:
    """Whether a job trains M2, and so has a val/accuracy curve."""
    return job.config.get("model.objective") == "m2"


def _hparam_info(key: str, values: list[Value], everywhere: bool) -> api_pb2.HParamInfo:
    """A column: its type and domain, and whether it differs, which TensorBoard lists first.

    A key of mixed types (null in one job, a number in another) gets neither: a domain of one
    type would hide the runs whose value is of the other.
    """
    kinds = {float if type(value) is int else type(value) for value in values}
    distinct = set(values)
    info = api_pb2.HParamInfo(name=key, differs=len(distinct) > 1 or not everywhere)
    if len(kinds) > 1:
        return info
    info.type = _TYPES[kinds.pop()]
    ordered = sorted(distinct)
    if info.type == api_pb2.DATA_TYPE_FLOAT64 and len(ordered) >= _MAX_CHECKBOXES:
        info.domain_interval.min_value, info.domain_interval.max_value = ordered[0], ordered[-1]
    else:
        info.domain_discrete.extend(ordered)
    return info


def _planned_values(sweep_dir: Path) -> dict[str, list[Value]]:
    """The values the sweep's command gives each swept key (Hydra's multirun.yaml), so that the
    domains hold them before their jobs start; none for a sweeper choosing as it goes (Optuna).
    """
    record = sweep_dir / "multirun.yaml"
    if not record.is_file():
        return {}
    task = list(OmegaConf.load(record).hydra.overrides.task)
    return {
        override.key_or_group: [_value(_unquoted(v)) for v in override.sweep_iterator()]
        for override in OverridesParser.create().parse_overrides(task)
        if override.value_type in _SWEEP_VALUES
    }


def _unquoted(value: Any) -> Any:
    return value.text if isinstance(value, QuotedString) else value


def _summary(tag: str, **plugin_data: Any) -> Summary:
    data = plugin_data_pb2.HParamsPluginData(**plugin_data)
    summary = Summary()
    summary.value.add(
        tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR
    )
    return summary


def _write(run_dir: Path, summaries: Iterable[Summary], step: int) -> None:
    """Replace the run's hparams event file in one step (a reader sees the old or the new)."""
    now = time.time()
    events = [
        Event(wall_time=now, file_version="brain.Event:2"),
        *(Event(wall_time=now, step=step, summary=summary) for summary in summaries),
    ]
    partial = run_dir / f".hparams.{socket.gethostname()}.{os.getpid()}.tmp"
    with partial.open("wb") as file:
        records = RecordWriter(file)
        for event in events:
            records.write(event.SerializeToString())
    os.replace(partial, run_dir / HPARAMS_FILE)
