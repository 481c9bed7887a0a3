"""`betavae-train`: compose and check the config, then run betavae.training.pipeline.

Exit status: 0 the run finished (or had finished already), 2 a mistake on the command line
(nothing ran), 3 the run diverged (in a sweep: a job did, the others ran), 128 + N stopped by
signal N and resumable.
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from betavae.apps import help, hydra_callbacks
from betavae.apps.cli import (
    command_line_value,
    exit_on_user_error,
    is_multirun,
    run_app,
    task_settings,
)
from betavae.apps.hydra_callbacks import DIVERGED_EXIT
from betavae.apps.multirun_job import (
    continue_restarted_slurm_job,
    ddp_ranks_run_this_job,
    give_parallel_job_its_device,
    give_slurm_job_its_ranks,
    job_name_overrides,
    log_only_from_rank_zero,
    register_resolvers,
    require_slurm,
    runs_as_slurm_job,
)
from betavae.apps.slurm_requeue import (
    ignore_requeue_signal,
    slurm_jobs_run_on,
    what_happens_next,
)
from betavae.apps.sweep_resume import check_sweep_can_resume
from betavae.commands import override, shell_word
from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas, validate
from betavae.training.run_dir import (
    AUTO_RESUME,
    CONFIG_FILE,
    DIVERGED,
    check_resume,
    removed_if_start_fails,
    require_checkpoint_file,
    resume_overrides,
)
from betavae.training.signals import STOP_REQUESTS, RunStopped
from betavae.user_paths import shown_path, user_path

register_schemas()
register_resolvers()
APP_NAME = "betavae-train"


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir, task_overrides = Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    try:
        # At once: in a SLURM job submitit calls this function (not `main`), and SLURM may send
        # its time-limit signal within seconds of the start (it checks limits every 30 s).
        STOP_REQUESTS.install()
        log_only_from_rank_zero(hydra_cfg)
        with exit_on_user_error(APP_NAME):
            with removed_if_start_fails(run_dir, Path(cfg.paths.output_dir)):
                validate(cfg)
            from betavae.training import pipeline  # torch and Lightning: seconds to import

            with ddp_ranks_run_this_job(run_dir, task_overrides):
                give_parallel_job_its_device(cfg, hydra_cfg)
                give_slurm_job_its_ranks(cfg, hydra_cfg)
                continue_restarted_slurm_job(cfg, hydra_cfg)
                metrics = pipeline.train(cfg, run_dir, task_overrides)
    except RunStopped as stopped:
        stopped.run_dir = run_dir
        if runs_as_slurm_job(hydra_cfg):
            # Nothing above catches it there; an exception would be recorded as the job's failure.
            _stopped(stopped, [], slurm_job=True)
        raise
    if runs_as_slurm_job(hydra_cfg):
        ignore_requeue_signal()
    if metrics["status"] == DIVERGED:
        from betavae.training.results import diverged_line

        print(f"{APP_NAME}: {diverged_line(run_dir, cfg, metrics)}", file=sys.stderr)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(DIVERGED_EXIT)
    return pipeline.returned_metric(metrics, cfg.optimized_metric)


def _continue_command(stopped: RunStopped, argv: list[str]) -> str | None:
    """The command that continues a stopped run (or sweep), quoted to paste into bash; None
    when there is nothing to continue."""
    run_dir = getattr(stopped, "run_dir", None)
    if is_multirun(argv):
        sweep_dir = _sweep_dir(run_dir)
        if sweep_dir is None or not any(sweep_dir.glob(f"*/{CONFIG_FILE}")):
            return None
        return _sweep_command(argv, sweep_dir)
    if run_dir is None or not (run_dir / CONFIG_FILE).is_file():
        return None
    return f"{APP_NAME} {override('resume', shown_path(run_dir))}"


def _sweep_command(argv: list[str], sweep_dir: Path) -> str:
    """The sweep's command, continuing the sweep in `sweep_dir`."""
    keep = [shell_word(a) for a in argv if not a.startswith(("resume=", "hydra.sweep.dir="))]
    sweep = [override("hydra.sweep.dir", shown_path(sweep_dir)), f"resume={AUTO_RESUME}"]
    return " ".join([APP_NAME, *keep, *sweep])


def _sweep_dir(job_dir: Path | None) -> Path | None:
    """The sweep being run: the stopped job's parent, or (when the signal reached this process
    while its jobs ran in others, hydra/launcher=parallel) the sweep Hydra set up."""
    if job_dir is not None:
        return job_dir.parent
    return hydra_callbacks.SWEEP_DIR


def _stopped(stopped: RunStopped, argv: list[str], slurm_job: bool = False) -> None:
    """Tell how the run was stopped and how it goes on; exit 128 + the signal number."""
    if _process_rank() == 0:
        if stopped.step is not None:
            at = f" at step {stopped.step}"
        else:  # in a sweep, jobs of other processes may have trained: each saved its step
            at = "" if is_multirun(argv) else " before training started"
        slurm_sweep = hydra_callbacks.SWEEP_DIR if _submits_to_slurm(argv) else None
        if slurm_job:
            then = what_happens_next(stopped, stopped.run_dir.parent)
        elif slurm_sweep is not None:
            then = slurm_jobs_run_on(_sweep_command(argv, slurm_sweep))
        elif (command := _continue_command(stopped, argv)) is not None:
            then = f"continue with: {command}"
        else:
            then = "nothing was written, start it again"
        print(f"{APP_NAME}: stopped by {stopped.signal_name}{at}; {then}", file=sys.stderr)
    sys.exit(stopped.exit_status)


def _submits_to_slurm(argv: list[str]) -> bool:
    """Whether this command submits its sweep's jobs to SLURM, where they run without it."""
    return is_multirun(argv) and command_line_value(argv, "hydra/launcher") == "slurm"


def _process_rank() -> int:
    """This process's rank in a distributed run (0 when alone), from the variables that
    Lightning's launcher and SLURM set, so that only rank 0 speaks."""
    import os

    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def _preflight(argv: list[str]) -> list[str]:
    """What can be checked from the command line alone, before Hydra creates any directory.

    Returns the overrides for `resume=<run dir>`; exits early, changing nothing, when the run
    has ended.
    """
    if any(arg.startswith(("--cfg", "-c", "--info", "--resolve")) for arg in argv):
        return []  # Hydra only shows the config: nothing runs, nothing needs to exist
    ckpt_path = command_line_value(argv, "ckpt_path")
    if ckpt_path is not None:
        require_checkpoint_file(user_path(ckpt_path), "ckpt_path")
    if command_line_value(argv, "hydra/launcher") == "slurm":
        require_slurm()
    resume = command_line_value(argv, "resume")
    if is_multirun(argv) and resume == AUTO_RESUME:
        check_sweep_can_resume(argv)
    overrides = resume_overrides(resume)
    if overrides:
        given = {k: v for k, v in task_settings(argv).items() if k != "resume"}
        notice = check_resume(user_path(resume), given)
        if notice is not None:
            line, status = notice
            if status == 0:
                print(line)
            else:
                print(f"{APP_NAME}: error: {line}", file=sys.stderr)
            sys.exit(status)
    return overrides


def _process_overrides(argv: list[str]) -> list[str]:
    """Sweep jobs named by their swept values; a DDP rank other than 0 writes no log file of
    its own into the run directory (rank 0 logs the run)."""
    quiet = ["hydra/job_logging=disabled"] if _process_rank() > 0 else []
    return [*job_name_overrides(argv), *quiet]


def main() -> None:
    STOP_REQUESTS.install()
    # Optuna's database layer announces each of its plugins as Hydra loads the Optuna sweeper.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    argv = sys.argv[1:]
    try:
        run_app(
            _hydra_main,
            APP_NAME,
            lambda: [*_preflight(argv), *_process_overrides(argv)],
            lambda: help.render(APP_NAME, "train", help.TRAIN),
        )
    except RunStopped as stopped:
        _stopped(stopped, argv)
