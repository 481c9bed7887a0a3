"""Issue 12 part 3: SLURM jobs interrupted by `scontrol requeue`, their time limit or `scancel`
continue from the checkpoint of the step they stopped at, on the local cluster.

Each test trains with a TensorBoard point at every step, so the event files show exactly which
steps ran: an uninterrupted job logs steps 0 … N-1 once each, and so must an interrupted one,
each attempt in an event file of its own in the job's one TensorBoard run.
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import SLURM_CPU, console_script, run_process, slurm_job
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from betavae.lifecycle.commands import shell_word
from betavae.training.tensorboard_hparams import HPARAMS_FILE

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]

# 4,000 sprites: 3,200 for training, 50 steps of 64 per epoch; one CPU per job.
STEPS_PER_EPOCH = 50
TRAINING = [
    "data.num_examples=4000",
    "data.image_size=32",
    "data.batch_size=64",
    "model.hidden_dims=[256]",
    "model.latent_dim=4",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
]
RESTORED = re.compile(r"Restoring states from the checkpoint path at (\S+)")


def _start_sweep(args: list[str], cwd: Path, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "BETAVAE_DATA_DIR": str(data_dir)}
    log = (cwd / "sweep.log").open("w")
    return subprocess.Popen(
        [console_script("betavae-train"), *args],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _slurm_job_id(sweep: Path) -> str:
    """The SLURM id of a one-job sweep, once submitit has written its submission script."""
    _wait_for(lambda: list(sweep.glob(".submitit/*/*_submission.sh")), "the submission")
    (submission,) = sweep.glob(".submitit/*/*_submission.sh")
    return submission.parent.name


def _finish(
    process: subprocess.Popen, job_ids: list[str], time_limit_min: int | None = None
) -> int:
    """Wait for the sweep command, starting requeued jobs at once instead of after SLURM's
    two-minute hold on them (their BeginTime), with `time_limit_min` if given."""
    deadline = time.monotonic() + 400
    limit = [] if time_limit_min is None else [f"TimeLimit={time_limit_min}"]
    try:
        while process.poll() is None:
            assert time.monotonic() < deadline, "the sweep did not finish"
            for job_id in job_ids:
                if slurm_job(job_id, timeout=0).get("Reason") == "BeginTime":
                    update = ["scontrol", "update", f"JobId={job_id}", *limit, "StartTime=now"]
                    subprocess.run(update, check=True)
            time.sleep(0.5)
        return process.returncode
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _steps_per_attempt(job_dir: Path) -> list[list[int]]:
    """The steps of `train/loss` in each training process's event file, oldest first."""
    attempts = []
    for events in sorted(job_dir.glob("events.out.tfevents.*"), key=lambda p: p.name):
        steps = [
            event.step
            for event in EventFileLoader(str(events)).Load()
            for value in event.summary.value
            if value.tag == "train/loss"
        ]
        if steps:
            attempts.append(steps)
    return attempts


def _assert_every_step_ran_once(job_dir: Path, epochs: int) -> list[list[int]]:
    """One TensorBoard run whose steps are 0 … N-1, each once: nothing trained twice or lost."""
    assert json.loads((job_dir / "metrics.json").read_text())["global_step"] == (
        epochs * STEPS_PER_EPOCH
    )
    runs = {events.parent for events in job_dir.rglob("events.out.tfevents.*")}
    assert runs == {job_dir}
    attempts = _steps_per_attempt(job_dir)
    steps = [step for attempt in attempts for step in attempt]
    assert steps == list(range(epochs * STEPS_PER_EPOCH))
    return attempts


def _resumed_from(job_dir: Path) -> list[Path]:
    """The checkpoints the job's restarts continued from (not the best one its test loads)."""
    log = (job_dir / "train.log").read_text()
    return [Path(path) for path in RESTORED.findall(log) if not path.endswith("/best.ckpt")]


def _job_stderr(sweep: Path, job_id: str) -> str:
    """What the job's attempts wrote to stderr, where betavae-train says how it stopped."""
    return "".join(log.read_text() for log in sorted(sweep.glob(f".submitit/{job_id}/*_log.err")))


def test_a_requeued_job_continues_from_the_step_it_was_stopped_at(
    slurm_cluster, tmp_path, data_dir
):
    epochs = 12
    args = ["-m", *SLURM_CPU, *TRAINING, f"trainer.max_epochs={epochs}", "hydra.sweep.dir=sweep"]
    process = _start_sweep(args, tmp_path, data_dir)
    sweep = tmp_path / "sweep"
    job_id = _slurm_job_id(sweep)
    _wait_for(lambda: (sweep / "0/checkpoints/last.ckpt").is_file(), "the first epoch")
    time.sleep(1)  # into the second epoch

    subprocess.run(["scontrol", "requeue", job_id], check=True)
    assert _finish(process, [job_id]) == 0

    assert slurm_job(job_id)["Restarts"] == "1"
    first, second = _assert_every_step_ran_once(sweep / "0", epochs)
    # The restart read the checkpoint written when SLURM stopped the first attempt.
    assert _resumed_from(sweep / "0") == [sweep / "0/checkpoints/last.ckpt"]
    assert second[0] == first[-1] + 1
    assert (
        f"betavae-train: stopped by SIGTERM at step {second[0]}; SLURM requeued job {job_id}, "
        "which continues when SLURM starts it again"
    ) in _job_stderr(sweep, job_id)


def test_a_job_at_its_time_limit_is_requeued_and_finishes_the_same_steps(
    slurm_cluster, tmp_path, data_dir
):
    epochs = 120
    # SIGUSR1 30 s before the time limit; SLURM checks limits every 30 s and signals early
    # rather than late, so a job whose limit is cut to 1 minute once it trains is signalled at
    # the next check, within 30 s, while it trains on (for 60 s or more on one of this
    # project's CPU cores). Cut before training, the limit could signal it during its start-up.
    signal_30s_before = ["hydra.launcher.signal_delay_s=30"]
    args = ["-m", *SLURM_CPU, *signal_30s_before, *TRAINING, f"trainer.max_epochs={epochs}"]
    process = _start_sweep([*args, "hydra.sweep.dir=sweep"], tmp_path, data_dir)
    sweep = tmp_path / "sweep"
    job_id = _slurm_job_id(sweep)
    _wait_for(lambda: (sweep / "0/checkpoints/last.ckpt").is_file(), "the first epoch")
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=1"], check=True)

    # Started again with the sweep's own time limit, the job finishes.
    assert _finish(process, [job_id], time_limit_min=10) == 0

    job = slurm_job(job_id)
    assert (job["JobState"], job["Restarts"]) == ("COMPLETED", "1")
    first, _ = _assert_every_step_ran_once(sweep / "0", epochs)
    stopped = f"betavae-train: stopped by SIGUSR1 at step {first[-1] + 1}; requeued SLURM job"
    assert f"{stopped} {job_id}, which continues when SLURM starts it again" in _job_stderr(
        sweep, job_id
    )
    assert _resumed_from(sweep / "0") == [sweep / "0/checkpoints/last.ckpt"]


def _run_files(job_dir: Path) -> dict[Path, int]:
    """The job's files and their times of change, less the records of its launches, a skipped
    one too (Hydra writes `.hydra/` before it, submitit's log lines go to train.log), and the
    sweep's HPARAMS experiment, which a training job writes into every job of its sweep."""
    shared = ("train.log", HPARAMS_FILE)
    files = (p for p in job_dir.rglob("*") if p.is_file() and p.name not in shared)
    return {p: p.stat().st_mtime_ns for p in files if ".hydra" not in p.parts}


def test_scancel_leaves_a_resumable_job_that_resume_auto_finishes(
    slurm_cluster, tmp_path, data_dir
):
    sweep = tmp_path / "sweep"
    finished, cancelled = sweep / "0_trainer.max_epochs=1", sweep / "1_trainer.max_epochs=12"
    args = ["-m", *SLURM_CPU, *TRAINING, "trainer.max_epochs=1,12", "hydra.sweep.dir=sweep"]
    process = _start_sweep(args, tmp_path, data_dir)
    array_id = _slurm_job_id(sweep)
    _wait_for(lambda: (finished / "metrics.json").is_file(), "the short job")
    _wait_for(lambda: (cancelled / "checkpoints/last.ckpt").is_file(), "the long job's epoch")
    time.sleep(1)  # into its second epoch

    subprocess.run(["scancel", f"{array_id}_1"], check=True)
    assert slurm_job(f"{array_id}_1")["JobState"] == "CANCELLED"
    assert slurm_job(f"{array_id}_0")["JobState"] == "COMPLETED"
    # Without accounting (sacct) submitit cannot see the cancelled job end: Ctrl-C the command.
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 128 + signal.SIGINT
    assert (tmp_path / "sweep.log").read_text().splitlines()[-1] == (
        "betavae-train: stopped by SIGINT; its SLURM jobs run on without it (squeue lists "
        "them); once none is queued or running, finish the sweep with: betavae-train "
        f"{' '.join(map(shell_word, args[:-1]))} hydra.sweep.dir=sweep resume=auto"
    )
    assert not (cancelled / "metrics.json").exists()
    # The checkpoint is of the step the job was stopped at: the last one it logged.
    (stopped_steps,) = _steps_per_attempt(cancelled)
    checkpoint = torch.load(cancelled / "checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == stopped_steps[-1] + 1
    assert (
        f"betavae-train: stopped by SIGTERM at step {stopped_steps[-1] + 1}; to finish the "
        "sweep, rerun its command with hydra.sweep.dir=sweep resume=auto once none of its jobs "
        "is queued or running"
    ) in _job_stderr(sweep, f"{array_id}_1")
    untouched = _run_files(finished)

    result = run_process([*args, "resume=auto"], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    assert _run_files(finished) == untouched
    _assert_every_step_ran_once(cancelled, epochs=12)
    assert json.loads((finished / "metrics.json").read_text())["epochs"] == 1
