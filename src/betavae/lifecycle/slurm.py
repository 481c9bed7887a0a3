"""A sweep's SLURM job (`hydra/launcher=slurm`): how it goes on once a signal has stopped its
run, and how it continues when SLURM starts it again.

SLURM sends SIGUSR1 `signal_delay_s` before a job's time limit (`--signal=USR1@<seconds>`,
conf/hydra/launcher/slurm.yaml). The run stops at the next step with a checkpoint of that step
(`stopping`); then rank 0 asks SLURM to start the job again, and the job exits. SLURM
ends it (SIGTERM), holds it a while (about 2 minutes) and starts it again under the same job
id, where it continues its run as `resume=auto` would (`restarts`).

SIGTERM comes from `scancel`, which means stop, or from SLURM requeueing the job itself
(`scontrol requeue`, preemption), which has put it back in the queue already: the job tells
which, because a requeue counts one more restart than the one the job was started as.
"""

import os
import re
import signal
import subprocess
from pathlib import Path

from betavae.lifecycle.commands import override
from betavae.lifecycle.signals import RunStopped
from betavae.user_paths import shown_path

REQUEUE_SIGNAL = signal.SIGUSR1
# Well within SLURM's KillWait (30 s by default) between its SIGTERM and SIGKILL.
_SCONTROL_TIMEOUT_S = 10


def what_happens_next(stopped: RunStopped, sweep_dir: Path) -> str:
    """Requeue the job if its time-limit signal stopped it; say how the job goes on."""
    job_id = _slurm_job_id()
    failed = ""
    if stopped.signum == REQUEUE_SIGNAL:
        why_not = _requeue(job_id)
        if why_not is None:
            return f"requeued SLURM job {job_id}, which continues when SLURM starts it again"
        failed = f"scontrol requeue {job_id} failed ({why_not}); "
    elif _requeued_by_slurm(job_id):
        return f"SLURM requeued job {job_id}, which continues when SLURM starts it again"
    sweep = override("hydra.sweep.dir", shown_path(sweep_dir))
    return (
        f"{failed}to finish the sweep, rerun its command with {sweep} resume=auto once none "
        "of its jobs is queued or running"
    )


def restarts() -> int:
    """How many times SLURM has started this job again (requeued at its time limit, by
    `scontrol requeue` or by preemption): SLURM counts them in SLURM_RESTART_COUNT."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def slurm_jobs_run_on(sweep_command: str) -> str:
    """What a stop of the command that submitted the sweep means: its jobs are SLURM's."""
    return (
        "its SLURM jobs run on without it (squeue lists them); once none is queued or "
        f"running, finish the sweep with: {sweep_command}"
    )


def ignore_requeue_signal() -> None:
    """Once the job's run has ended, its time-limit signal has nothing left to stop. Ignored,
    the signal stays ignored while Python exits, whereas a handler is then reset to the
    default action, which ends the process (measured: a job that had written its result died
    of SIGUSR1 during Python's exit, and SLURM recorded it as FAILED, exit code 138)."""
    signal.signal(REQUEUE_SIGNAL, signal.SIG_IGN)


def _slurm_job_id() -> str:
    """The id `scontrol` knows this job by: `<array job>_<task>` for a job of an array (a
    sweep's jobs are one array), else SLURM_JOB_ID."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


def _scontrol(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["scontrol", *args], capture_output=True, text=True, timeout=_SCONTROL_TIMEOUT_S
    )


def _requeue(job_id: str) -> str | None:
    """`scontrol requeue` this job; None when SLURM took it, else why not, in a few words."""
    # SLURM ends the job it requeues with SIGTERM: the run's stop is done and saved, so let
    # this process finish leaving rather than stop a second time.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        requeued = _scontrol("requeue", job_id)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if requeued.returncode != 0:
        return requeued.stderr.strip() or f"exit status {requeued.returncode}"
    return None


def _requeued_by_slurm(job_id: str) -> bool:
    """Whether SLURM has put this job back in the queue: it counts the restart at once, so
    its count is then above SLURM_RESTART_COUNT, the count this start of the job was given
    (measured on the local cluster: `scontrol requeue` raises it, `scancel` does not)."""
    try:
        shown = _scontrol("--oneliner", "show", "job", job_id)
    except (OSError, subprocess.TimeoutExpired):
        return False
    counted = re.search(r"\bRestarts=(\d+)", shown.stdout)
    return counted is not None and int(counted.group(1)) > restarts()
