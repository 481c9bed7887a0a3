"""A betavae-train command line, planned before Hydra writes anything.

Hydra creates the run (or sweep) directory, records the command in it and rewrites a sweep's
multirun.yaml as soon as it starts. So everything that decides what a command does is decided
here first, from the command line alone: its config is composed (Hydra's compose API), each
run it names is planned (`lifecycle.plan`), a refusal or a run that has ended answers before
any file is touched, and the directory of a new run or sweep is claimed. Hydra is then given
the command line to run: the run's directory fixed, and for `resume=<run dir>` the run's own
settings ahead of the command line's changes. Each job plans again when it runs, from the same
state: a SLURM job started again, or an Optuna trial, has only its own directory to go by.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, open_dict

from betavae.apps.cli import DIVERGED_EXIT, command_line_value, is_multirun, is_override
from betavae.apps.composing import compose_train, composed_settings
from betavae.apps.multirun_job import job_name_overrides, require_slurm
from betavae.config.schema import validate
from betavae.errors import UserError
from betavae.lifecycle.commands import (
    TRAIN,
    hydra_quoted,
    merged_overrides,
    override_key,
    reproducing_overrides,
    shell_word,
    sweep_command,
)
from betavae.lifecycle.layout import (
    AUTO_RESUME,
    DIVERGED,
    claim_new_directory,
    is_run,
    require_run_dir,
)
from betavae.lifecycle.plan import Action, Request, RunState, plan_run
from betavae.user_paths import shown_path, user_path

# Flags with which Hydra only shows the config: nothing runs, so nothing is planned.
_SHOW_ONLY = ("--cfg", "-c", "--info", "--resolve")


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    """The command line Hydra runs."""
    run_dir: Path | None = None
    """A single run's directory."""
    sweep_dir: Path | None = None
    """A sweep's directory."""


def plan_command_line(argv: list[str]) -> Invocation:
    """Plan what `argv` does; exit (0) when it has nothing to do, raise `UserError` when it
    is refused, before anything is written."""
    if any(arg.startswith(_SHOW_ONLY) for arg in argv):
        return Invocation(argv)
    flags = [arg for arg in argv if not is_override(arg)]
    overrides = [arg for arg in argv if is_override(arg)]
    task = [o for o in overrides if not _is_hydra(o)]
    hydra = [o for o in overrides if _is_hydra(o)]
    resume = command_line_value(argv, "resume")
    if resume is not None and command_line_value(argv, "ckpt_path") is not None:
        raise UserError(
            "resume= and ckpt_path= exclude each other: resume continues a run in its own "
            "directory, ckpt_path starts a new run from a checkpoint; give one of them"
        )
    _refuse_sweep_params(argv)
    if is_multirun(argv):
        return _plan_sweep(argv, flags, task, hydra, resume)
    return _plan_run(flags, task, hydra, resume)


def _refuse_sweep_params(argv: list[str]) -> None:
    """`hydra.sweeper.params={key:"values"}` ends in a traceback inside Hydra 1.3 (OmegaConf
    cannot merge a mapping into the unset value); the same sweep is the command with each key's
    values given as an override instead, which the one line shows where Hydra reads them back
    as typed."""
    parser = OverridesParser.create()
    for given in argv:
        if not is_override(given) or override_key(given) != "hydra.sweeper.params":
            continue
        params = parser.parse_override(given).value()
        if not isinstance(params, dict) or not params:
            continue
        sweep = [f"{key}={values}" for key, values in params.items()]
        try:
            parser.parse_overrides(sweep)
        except OverrideParseException:
            instead = "-m key=value1,value2 for each key"
        else:
            rest = [arg for arg in argv if arg not in (given, "-m", "--multirun")]
            instead = " ".join([TRAIN, "-m", *map(shell_word, [*rest, *sweep])])
        raise UserError(
            f"{given}: Hydra cannot take its sweep parameters from the command line; give each "
            f"key its values instead: {instead}"
        )


def _is_hydra(override: str) -> bool:
    return override_key(override).startswith(("hydra.", "hydra/"))


def _plan_run(
    flags: list[str], task: list[str], hydra: list[str], resume: str | None
) -> Invocation:
    given_dir = _given(hydra, "hydra.run.dir")
    if resume == AUTO_RESUME and given_dir is None:
        raise UserError(
            "resume=auto continues what a directory holds, and this command names none; to "
            "continue a run: resume=<run dir>; a sweep: -m ... hydra.sweep.dir=<its dir> "
            "resume=auto"
        )
    run_dir = given_dir
    if resume not in (None, AUTO_RESUME):
        run_dir = require_run_dir(user_path(resume), "resume")
        # The run's own settings, with the command line's changes after them.
        task = merged_overrides(reproducing_overrides(run_dir, composed_settings), task)
        hydra = [*hydra, f"hydra.run.dir={hydra_quoted(run_dir)}", "hydra.output_subdir=null"]
    composed = compose_train([*task, *hydra], with_hydra=True)
    config = _task_config(composed)
    validate(config)
    target = run_dir if run_dir is not None else Path(composed.hydra.run.dir)
    # A directory named by the time is the new run's own: one that holds a run already (it
    # started earlier in the same second) is passed over by claim_new_directory, not refused.
    state = RunState.read(target) if run_dir is not None else RunState(None, None)
    plan = plan_run(Request(target, config, resume, compose=composed_settings), state)
    if plan.action is Action.SKIP:
        print("\n".join(plan.notices))
        sys.exit(DIVERGED_EXIT if state.status == DIVERGED else 0)
    if run_dir is None:
        run_dir = claim_new_directory(target)
        hydra = [*hydra, f"hydra.run.dir={hydra_quoted(run_dir)}"]
    return Invocation([*flags, *hydra, *task], run_dir=run_dir)


def _plan_sweep(
    argv: list[str], flags: list[str], task: list[str], hydra: list[str], resume: str | None
) -> Invocation:
    if resume not in (None, AUTO_RESUME):
        raise UserError(
            f"resume={resume}: -m runs a sweep, and resume=<run dir> continues one run; leave "
            "out -m, or continue a sweep with hydra.sweep.dir=<its dir> resume=auto"
        )
    composed = compose_train(_first_job(task) + hydra, with_hydra=True)
    if command_line_value(argv, "hydra/launcher") == "slurm":
        require_slurm(composed.hydra.launcher)
    given_dir = _given(hydra, "hydra.sweep.dir")
    sweep_dir = Path(composed.hydra.sweep.dir) if given_dir is None else given_dir
    if resume == AUTO_RESUME:
        if given_dir is None:
            raise UserError(
                "resume=auto: name the sweep to continue with hydra.sweep.dir=<its directory> "
                "(the line that stopped it printed the whole command)"
            )
        if command_line_value(argv, "hparams_search") is not None:
            raise UserError(
                "resume=auto: a hyper-parameter search chooses its jobs as it goes, so a rerun "
                "cannot find them again; start a new search (its finished jobs stay in "
                f"{shown_path(sweep_dir)})"
            )
    elif given_dir is not None and any(is_run(job) for job in _job_dirs(sweep_dir)):
        again = sweep_command(sweep_dir) or "its command with resume=auto"
        raise UserError(
            f"hydra.sweep.dir={shown_path(sweep_dir)} holds a sweep already; continue it with: "
            f"{again}, or give the new sweep a directory of its own"
        )
    if command_line_value(argv, "hparams_search") is None:
        _plan_jobs(sweep_dir, [*_configured_sweep(composed), *task], hydra, resume)
    if given_dir is None:
        sweep_dir = claim_new_directory(sweep_dir)
        hydra = [*hydra, f"hydra.sweep.dir={hydra_quoted(sweep_dir)}"]
    return Invocation([*flags, *hydra, *task, *job_name_overrides(argv)], sweep_dir=sweep_dir)


def _plan_jobs(sweep_dir: Path, task: list[str], hydra: list[str], resume: str | None) -> None:
    """Check every job's config, and with resume=auto plan every job that has a directory
    already, so that a mistake, or a rerun that would continue another experiment under a
    job's name, is refused before Hydra writes the sweep's records."""
    existing = {_job_number(job): job for job in _job_dirs(sweep_dir)} if resume else {}
    for number, job_overrides in enumerate(_split(task)):
        config = compose_train([*job_overrides, *hydra])
        validate(config)
        job_dir = existing.get(number)
        if job_dir is not None:
            request = Request(job_dir, config, resume, sweep_dir, compose=composed_settings)
            plan_run(request, RunState.read(job_dir))


def _split(task: list[str]) -> list[list[str]]:
    """Each job's overrides, in job-number order, as Hydra's basic sweeper makes them."""
    parsed = OverridesParser.create().parse_overrides(task)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _configured_sweep(composed: DictConfig) -> list[str]:
    """The sweep a config asks for (`hydra.sweeper.params`, e.g. an experiment's): Hydra's
    basic sweeper puts these before the command line's, so the jobs are numbered from both."""
    params = composed.hydra.sweeper.get("params") or {}
    return [f"{key}={value}" for key, value in params.items()]


def _first_job(task: list[str]) -> list[str]:
    """The overrides of the sweep's first job: enough to compose Hydra's own settings."""
    return _split(task)[0] if task else []


def _job_dirs(sweep_dir: Path) -> list[Path]:
    if not sweep_dir.is_dir():
        return []
    return [path for path in sweep_dir.iterdir() if path.is_dir() and _job_number(path) >= 0]


def _job_number(job_dir: Path) -> int:
    prefix = job_dir.name.split("_", 1)[0]
    return int(prefix) if prefix.isdigit() else -1


def _given(hydra: list[str], key: str) -> Path | None:
    value = command_line_value(hydra, key)
    return None if value is None else user_path(value)


def _task_config(composed: DictConfig) -> DictConfig:
    """The run's config without Hydra's own settings, as a job sees it."""
    config = composed.copy()
    with open_dict(config):
        del config["hydra"]
    return config
