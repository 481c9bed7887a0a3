"""What one job of a Hydra multirun needs beyond a single run: its devices, and DDP ranks.

Hydra runs a sweep's jobs one after another in this process (basic launcher), in a pool of
worker processes (`hydra/launcher=parallel`, joblib), or as SLURM jobs (`hydra/launcher=slurm`,
submitit; SLURM starts the ranks and Lightning's SLURMEnvironment reads them).
"""

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from betavae.apps.cli import is_multirun, is_override
from betavae.errors import UserError
from betavae.lifecycle import slurm
from betavae.lifecycle.layout import AUTO_RESUME

_JOBLIB_LAUNCHER = "JoblibLauncher"
_SLURM_LAUNCHER = "SlurmLauncher"
# Never part of a job's name: rerunning a sweep with resume=auto must find the same directories.
_NOT_IN_JOB_NAMES = ("resume", "ckpt_path")
# What Lightning's process launcher sets in this process for the ranks it starts.
_DDP_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def job_name_overrides(argv: list[str]) -> list[str]:
    """Name each job of a sweep by the values it sweeps, not by every override of the command.

    `hydra.sweep.subdir` is `<job number>_<override_dirname>`; excluding the keys that have one
    value for the whole sweep gives names like `3_model.beta=4,model.latent_dim=8`. The names
    follow from the command alone, so the same command finds the same directories again.
    """
    if not is_multirun(argv):
        return []
    candidates = [arg for arg in argv if is_override(arg)]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except OverrideParseException:
        return []  # Hydra reports the bad override itself, with its own message.
    swept = {o.key_or_group for o in overrides if o.is_sweep_override()}
    keys = [o.key_or_group for o in overrides if not o.key_or_group.startswith("hydra")]
    fixed = [key for key in keys if key not in swept]
    excluded = ",".join(dict.fromkeys([*_NOT_IN_JOB_NAMES, *fixed]))
    return [f"hydra.job.config.override_dirname.exclude_keys=[{excluded}]"]


# Jobs of `hydra/launcher=parallel` sharing one GPU by default. A small VAE leaves a GPU idle
# most of each step (Python and kernel launches): on an H200, the README's nine-job sweep
# finished 1.63x sooner with 8 jobs at once than one at a time, each job's results identical
# (benchmarks/on_gpu.py, benchmarks/results/throughput-NVIDIA-H200-*.json).
JOBS_PER_GPU = 8


def parallel_jobs() -> int:
    """How many jobs `hydra/launcher=parallel` runs at once: `JOBS_PER_GPU` per GPU, no more
    than one per core (each job's Python needs one); without GPUs one per core."""
    import torch  # here, not at the top: the train app must start without importing torch

    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    return min(cores, JOBS_PER_GPU * gpus) if gpus else cores


def require_slurm(launcher: DictConfig) -> None:
    """`hydra/launcher=slurm` needs a SLURM cluster that answers, with GPUs on its nodes if the
    jobs ask for some: say so before any sweep directory is made, rather than with
    submitit's traceback after."""
    if shutil.which("sbatch") is None:
        raise UserError(
            "hydra/launcher=slurm: sbatch is not on this machine; run the sweep on a SLURM "
            "login node, or leave hydra/launcher=slurm out to run the jobs here"
        )
    conf = os.environ.get("SLURM_CONF")
    if conf is not None and not os.path.isfile(conf):  # sinfo would retry for a minute
        raise UserError(
            f"hydra/launcher=slurm: SLURM_CONF={conf} does not exist; point it at the cluster's "
            "slurm.conf, or leave hydra/launcher=slurm out to run the jobs here"
        )
    partition = ["--partition", launcher.partition] if launcher.partition else []
    answer = _sinfo(["--noheader", "--format=%G", *partition])
    gpus = launcher.gpus_per_node or 0
    if gpus > 0 and not any("gpu" in line for line in answer.splitlines()):
        where = f"partition {launcher.partition}" if launcher.partition else "the cluster"
        raise UserError(
            f"hydra.launcher.gpus_per_node={gpus}: the nodes of {where} have no GPUs (sinfo "
            "lists no gpu resources); add hydra.launcher.gpus_per_node=0 to run the jobs on "
            "their CPUs"
        )


def _sinfo(arguments: list[str]) -> str:
    """sinfo's output; a `UserError` when no cluster answers."""
    try:
        answer = subprocess.run(["sinfo", *arguments], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        reason = str(error)
    else:
        if answer.returncode == 0:
            return answer.stdout
        lines = answer.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"exit status {answer.returncode}"
    raise UserError(
        f"hydra/launcher=slurm: no SLURM cluster answers (sinfo: {reason}); run the sweep on a "
        "SLURM login node, or leave hydra/launcher=slurm out to run the jobs here"
    )


def quiet_slurm_polls() -> None:
    """While a SLURM sweep waits, submitit asks sacct for its jobs' states at every poll; on a
    cluster without accounting each answer is an error that submitit reports twice (stdout and
    stderr) and Hydra's log once more. Leave sacct's own line, which says why: submitit learns
    that a job ended from the result file it writes instead."""
    logging.getLogger("submitit").addFilter(
        lambda record: "Bypassing sacct error" not in record.getMessage()
    )


def tasks_for_gpus(gpus_per_node: int | None) -> int:
    """SLURM tasks per node for `hydra/launcher=slurm`: one per GPU, one on a CPU-only node."""
    return max(1, gpus_per_node or 0)


def job_dir_name(number: int, override_dirname: str) -> str:
    """`3_model.beta=4,model.latent_dim=8`, or just `0` for a sweep of fixed values."""
    return f"{number}_{override_dirname}" if override_dirname else str(number)


def register_resolvers() -> None:
    """Resolvers the configs use; registered on import of the train app, so also in workers."""
    for name, resolver in {
        "betavae.parallel_jobs": parallel_jobs,
        "betavae.job_dir_name": job_dir_name,
        "betavae.tasks_for_gpus": tasks_for_gpus,
    }.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def give_parallel_job_its_device(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """Under the parallel launcher, put each job on its own GPU (job number modulo GPUs).

    Without GPUs each job is one CPU process with its share of the cores, so that the jobs
    running at once do not fight over threads.
    """
    if not hydra_cfg.launcher._target_.endswith(_JOBLIB_LAUNCHER):
        return
    import torch

    if cfg.trainer.strategy not in ("auto", "single_device"):
        raise UserError(
            f"trainer.strategy={cfg.trainer.strategy}: hydra/launcher=parallel gives each job "
            "one device; for jobs on several devices use trainer=ddp without that launcher"
        )
    gpus = torch.cuda.device_count()
    use_gpu = gpus > 0 and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    with open_dict(cfg.trainer):
        cfg.trainer.accelerator = "gpu" if use_gpu else "cpu"
        cfg.trainer.devices = [hydra_cfg.job.num % gpus] if use_gpu else 1
    if not use_gpu:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, hydra_cfg.launcher.n_jobs)))


def give_slurm_job_its_ranks(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """Under the SLURM launcher, make the Trainer's ranks the SLURM tasks of this job.

    Lightning's SLURMEnvironment takes the ranks from SLURM and refuses a `devices` or
    `num_nodes` other than the tasks per node and nodes that sbatch was given, so those two
    launcher keys decide the layout; `trainer.devices=auto` would mean one device on a CPU.
    """
    if not runs_as_slurm_job(hydra_cfg):
        return
    launcher = hydra_cfg.launcher
    wanted = {"devices": launcher.tasks_per_node, "num_nodes": launcher.nodes}
    for key, value in wanted.items():
        if cfg.trainer[key] not in ("auto", 1, value):
            launcher_key = "tasks_per_node" if key == "devices" else "nodes"
            raise UserError(
                f"trainer.{key}={cfg.trainer[key]}: under hydra/launcher=slurm each SLURM task is "
                f"one rank; set hydra.launcher.{launcher_key}={cfg.trainer[key]} instead "
                f"(now {value}), or leave trainer.{key} out"
            )
    with open_dict(cfg.trainer):
        cfg.trainer.update(wanted)


def runs_as_slurm_job(hydra_cfg: DictConfig) -> bool:
    """Whether this job runs as a SLURM job (`hydra/launcher=slurm`), where submitit calls the
    task function: nothing of the sweep command's process is around it."""
    launcher = hydra_cfg.launcher._target_
    return hydra_cfg.mode == RunMode.MULTIRUN and launcher.endswith(_SLURM_LAUNCHER)


def job_resume(cfg: DictConfig, hydra_cfg: DictConfig) -> str | None:
    """What the job's `resume` asks: as given, except that a SLURM job that SLURM started
    again (requeued at its time limit, by `scontrol requeue`, or preempted) continues its run,
    as `resume=auto` would."""
    if runs_as_slurm_job(hydra_cfg) and slurm.restarts() > 0 and cfg.resume is None:
        return AUTO_RESUME
    return cfg.resume


def log_only_from_rank_zero(hydra_cfg: DictConfig) -> None:
    """In a SLURM job of several tasks (DDP ranks) only rank 0 writes the job's train.log.

    submitit runs every task with the job's logging config; a rank that Lightning starts is
    given `hydra/job_logging=disabled` on its command line instead (`apps.train`).
    """
    if not runs_as_slurm_job(hydra_cfg) or os.environ.get("SLURM_PROCID", "0") == "0":
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


@contextmanager
def ddp_ranks_run_this_job(job_dir: Path, task_overrides: list[str]) -> Iterator[None]:
    """In a multirun, make the DDP ranks Lightning starts run this job, not the whole sweep.

    Lightning starts ranks 1.. by running `sys.argv` again with `hydra.run.dir=<run.dir>`
    added (Lightning issue 11300): in a multirun that command is the sweep, and run.dir is
    not the job's directory. For the job's duration the command is a single run of this job's
    overrides and run.dir is its directory. Afterwards the rank variables and the process
    group are undone, so that the next job in this process starts ranks of its own.
    """
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        yield
        return
    argv, run_dir = sys.argv, hydra_cfg.run.dir
    environment = {name: os.environ.get(name) for name in _DDP_ENVIRONMENT}
    sys.argv = [argv[0], *_config_arguments(hydra_cfg), *task_overrides]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = str(job_dir)
    try:
        yield
    finally:
        sys.argv = argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = run_dir
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        dist = sys.modules.get("torch.distributed")  # not imported by a job that skipped
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _config_arguments(hydra_cfg: DictConfig) -> list[str]:
    """The command-line flags that chose the config, for a rank to compose the same one."""
    arguments = [f"--config-name={hydra_cfg.job.config_name}"]
    for source in hydra_cfg.runtime.config_sources:
        if source.provider == "command-line" and source.schema == "file":
            arguments.append(f"--config-dir={source.path}")
    return arguments
