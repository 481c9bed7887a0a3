"""`betavae-train`: plan the command line, then run each of its runs as planned.

Exit status: 0 the run finished (or had finished already), 2 a mistake on the command line
(nothing ran), 3 the run diverged (in a sweep: a job did, the others ran), 128 + N stopped by
signal N and resumable.
"""

import atexit
import logging
import multiprocessing.util
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from betavae.apps import help
from betavae.apps.cli import (
    DIVERGED_EXIT,
    command_line_value,
    exit_on_user_error,
    is_multirun,
    run_app,
)
from betavae.apps.composing import composed_settings
from betavae.apps.invocation import Invocation, plan_command_line
from betavae.apps.multirun_job import (
    ddp_ranks_run_this_job,
    give_parallel_job_its_device,
    give_slurm_job_its_ranks,
    job_resume,
    log_only_from_rank_zero,
    quiet_slurm_polls,
    register_resolvers,
    runs_as_slurm_job,
)
from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas, validate
from betavae.lifecycle import slurm
from betavae.lifecycle.commands import resume_command, shell_word, sweep_command
from betavae.lifecycle.layout import DIVERGED, is_run, read_metrics, sweep_of
from betavae.lifecycle.plan import Action, Request, RunState, plan_run, removed_if_start_fails
from betavae.lifecycle.records import read_sweep
from betavae.lifecycle.signals import STOP_REQUESTS, RunStopped
from betavae.user_paths import shown_path

register_schemas()
register_resolvers()
APP_NAME = "betavae-train"


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    """One run (one job of a sweep): plan it from its directory, then carry the plan out."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # At once: a sweep's job may run in a process of its own (a SLURM task, a joblib worker),
    # and SLURM may send its time-limit signal within seconds of the start.
    STOP_REQUESTS.install()
    log_only_from_rank_zero(hydra_cfg)
    try:
        with exit_on_user_error(APP_NAME):
            validate(cfg)
            with ddp_ranks_run_this_job(run_dir, list(hydra_cfg.overrides.task)):
                give_parallel_job_its_device(cfg, hydra_cfg)
                give_slurm_job_its_ranks(cfg, hydra_cfg)
                plan = plan_run(_request(cfg, hydra_cfg, run_dir), RunState.read(run_dir))
                if plan.action is Action.SKIP:
                    if _rank() == 0:
                        print("\n".join(plan.notices))
                    metrics = read_metrics(run_dir)
                else:
                    # Only now: torch and Lightning take seconds to import, which a job that
                    # skips (a rerun sweep's finished job, in a SLURM job of its own) spares.
                    from betavae.training import pipeline

                    root = Path(cfg.paths.output_dir)
                    with removed_if_start_fails(plan, root, may_remove=_rank() == 0):
                        metrics = pipeline.train(plan)
    except RunStopped as stopped:
        if runs_as_slurm_job(hydra_cfg):
            # Nothing above catches it there; an exception would be recorded as the job's failure.
            _stopped_slurm_job(stopped, run_dir)
        raise
    if runs_as_slurm_job(hydra_cfg):
        slurm.ignore_requeue_signal()
    if metrics["status"] == DIVERGED and _rank() == 0:
        from betavae.training.results import diverged_line

        print(f"{APP_NAME}: {diverged_line(run_dir, metrics, composed_settings)}", file=sys.stderr)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(DIVERGED_EXIT)
    return _returned_metric(metrics, cfg.optimized_metric)


def _request(cfg: DictConfig, hydra_cfg: DictConfig, run_dir: Path) -> Request:
    """What this job asks of its directory."""
    resume = job_resume(cfg, hydra_cfg)
    if resume != cfg.resume and _rank() == 0:
        print(f"SLURM restart {slurm.restarts()} of this job: continuing its run, as resume=auto")
    sweep_dir = run_dir.parent if hydra_cfg.mode == RunMode.MULTIRUN else sweep_of(run_dir)
    return Request(run_dir, cfg, resume, sweep_dir, compose=composed_settings)


def _returned_metric(metrics: dict, name: str) -> float:
    """The number a sweeper optimises; NaN for a diverged run, so that Optuna records the
    trial as failed rather than ranking it."""
    return float("nan") if metrics["status"] == DIVERGED else metrics[name]


def _rank() -> int:
    """This process's rank in a distributed run (0 when alone), from the variables that
    Lightning's launcher and SLURM set, so that only rank 0 speaks."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def _stopped_slurm_job(stopped: RunStopped, run_dir: Path) -> None:
    if _rank() == 0:
        then = slurm.what_happens_next(stopped, run_dir.parent)
        print(f"{APP_NAME}: {_stopped_at(stopped, sweep=False)}; {then}", file=sys.stderr)
    sys.exit(stopped.exit_status)


def _stopped_at(stopped: RunStopped, sweep: bool) -> str:
    if stopped.step is not None:
        return f"stopped by {stopped.signal_name} at step {stopped.step}"
    # In a sweep, jobs of other processes may have trained: each saved its step.
    return f"stopped by {stopped.signal_name}{'' if sweep else ' before training started'}"


def _stopped(stopped: RunStopped, invocation: Invocation, argv: list[str]) -> None:
    """Tell how the run (or sweep) was stopped and how it goes on; exit 128 + the signal."""
    if _rank() == 0:
        sweep_dir = invocation.sweep_dir
        if sweep_dir is not None:
            command = sweep_command(sweep_dir) if _any_job_started(sweep_dir) else None
        elif invocation.run_dir is not None and is_run(invocation.run_dir):
            command = resume_command(invocation.run_dir)
        else:
            command = None
        if command is None:
            then = "nothing was written, start it again"
        elif command_line_value(argv, "hydra/launcher") == "slurm":
            then = slurm.slurm_jobs_run_on(command)
        else:
            then = f"continue with: {command}"
        at = _stopped_at(stopped, sweep=sweep_dir is not None)
        print(f"{APP_NAME}: {at}; {then}", file=sys.stderr)
    sys.exit(stopped.exit_status)


def _any_job_started(sweep_dir: Path) -> bool:
    return sweep_dir.is_dir() and any(is_run(job) for job in sweep_dir.iterdir())


def _end_of_sweep(sweep_dir: Path) -> None:
    """A sweep in which a job diverged ends with exit status 3 once every job has run."""
    jobs = read_sweep(sweep_dir)
    diverged = [job.directory.name for job in jobs if job.status == DIVERGED]
    if diverged:
        print(
            f"{APP_NAME}: {len(diverged)} of {len(jobs)} jobs diverged ({', '.join(diverged)}); "
            f"the others ran to the end: betavae-report {shell_word(shown_path(sweep_dir))} "
            "compares them",
            file=sys.stderr,
        )
        sys.exit(DIVERGED_EXIT)


def _process_overrides(argv: list[str]) -> list[str]:
    """A DDP rank other than 0 writes no log file of its own into the run directory (rank 0
    logs the run)."""
    return ["hydra/job_logging=disabled"] if _rank() > 0 else []


def _end_parallel_workers() -> None:
    """End the worker processes of hydra/launcher=parallel. Hydra's joblib launcher leaves
    loky's reusable workers waiting 300 s for more work; Python's exit would end them, but the
    console scripts end without Python's teardown (apps/console.py), and the orphans kept the
    sweep's output pipes open (`betavae-train -m ... | tee`, a test's captured output) for those
    five minutes. loky keeps its one executor in a module global.

    The same skipped teardown runs none of joblib's atexit finalizers, which delete the
    executor's temporary folders and unregister them from loky's resource tracker; without them
    the tracker, ending after the sweep, warned of "1 leaked folder objects" (a folder joblib
    registers before it is needed, and does not create for a sweep's jobs). So they run here.

    Nor does it run multiprocessing's exit finalizers, which unlink loky's named semaphores and
    unregister them from the tracker. A semaphore whose queue was still referenced at exit
    (CI saw the three of the call queue once in many sweeps) drew "3 leaked semlock objects";
    they run here too, as Python's exit runs them, whatever still refers to the semaphores.
    """
    reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
    if reusable is None or reusable._executor is None:
        return
    executor = reusable._executor
    executor.shutdown(wait=True, kill_workers=True)
    finalizers = executor._temp_folder_manager._finalizers
    for context_id in list(finalizers):
        cleanup = finalizers.pop(context_id)
        atexit.unregister(cleanup)
        cleanup()
    multiprocessing.util._run_finalizers(0)


def main() -> None:
    STOP_REQUESTS.install()
    # Optuna's database layer announces each of its plugins as Hydra loads the Optuna sweeper.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    argv = sys.argv[1:]
    if command_line_value(argv, "hydra/launcher") == "slurm":
        quiet_slurm_polls()
    planned = Invocation(argv)

    def command_line(typed: list[str]) -> list[str]:
        nonlocal planned
        planned = plan_command_line(typed)
        return [*planned.argv, *_process_overrides(typed)]

    try:
        run_app(
            _hydra_main,
            APP_NAME,
            lambda: help.render(APP_NAME, "train", help.TRAIN),
            command_line,
        )
    except RunStopped as stopped:
        _stopped(stopped, planned, argv)
    finally:
        _end_parallel_workers()
    if planned.sweep_dir is not None and is_multirun(argv) and planned.sweep_dir.is_dir():
        _end_of_sweep(planned.sweep_dir)
