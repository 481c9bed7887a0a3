"""Sweeps through real sbatch on a local one-node SLURM cluster (`hydra/launcher=slurm`), one
file so that its tests share the one cluster (pytest-xdist runs a file's tests on one worker).

Interrupted jobs (issue 12 part 3): SLURM jobs interrupted by `scontrol requeue`, their time
limit or `scancel` continue from the checkpoint of the step they stopped at. Those tests train
with a TensorBoard point at every step, so the event files show exactly which steps ran: an
uninterrupted job logs steps 0 … N-1 once each, and so must an interrupted one, each attempt in
an event file of its own in the job's one TensorBoard run.
"""

import csv
import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch
from helpers import (
    SLURM_CPU,
    TINY_RUN,
    console_script,
    event_file_pids,
    run_cli,
    run_forked,
    slurm_job,
    with_data_dir,
)
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from betavae.lifecycle.commands import shell_word
from betavae.loading import load_run
from betavae.training.tensorboard_hparams import HPARAMS_FILE
from betavae.vae import kl_standard_normal

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

RUN_FILES = ("config.yaml", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt")
EPOCHS = 2


def _complete_job(job_dir: Path) -> dict:
    for name in RUN_FILES:
        assert (job_dir / name).is_file(), (job_dir, name)
    assert len(event_file_pids(job_dir)) == 1
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert metrics["epochs"] == EPOCHS
    return metrics


def _slurm_job_ids(sweep: Path) -> list[str]:
    """The SLURM job ids submitit recorded, e.g. ['7_0', '7_1'] for an array of two."""
    logs = sorted(sweep.glob(".submitit/*/*_0_log.out"))
    return [re.search(r"job_id=([\d_]+)", log.read_text()).group(1) for log in logs]


def test_a_sweep_submits_one_sbatch_job_per_value_and_the_report_reads_them(
    slurm_cluster, fork_server, tmp_path, data_dir
):
    args = ["-m", *SLURM_CPU, *TINY_RUN, f"trainer.max_epochs={EPOCHS}", "model.beta=1,4"]
    # A process of its own, unlike the other sweeps here: submitit's log handlers keep the
    # streams of the moment it is imported, so in this one its lines would miss the output.
    result = run_forked(fork_server, [*args, "hydra.sweep.dir=sweep"], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    # While it waits, one line per poll of the jobs' states (sacct's, on a cluster without
    # accounting), not submitit's report of it twice and Hydra's copy.
    assert "Bypassing sacct error" not in result.stdout + result.stderr
    sweep = tmp_path / "sweep"
    (submission,) = sweep.glob(".submitit/*/*_submission.sh")
    sbatch = submission.read_text()
    # One array of two jobs; betavae's requeue signal instead of submitit's SIGUSR2.
    assert "#SBATCH --array=0-1%2" in sbatch
    assert "#SBATCH --signal=USR1@120" in sbatch
    assert "#SBATCH --requeue" in sbatch
    assert "USR2" not in sbatch
    job_ids = _slurm_job_ids(sweep)
    assert len(job_ids) == 2
    assert [slurm_job(job_id)["JobState"] for job_id in job_ids] == ["COMPLETED", "COMPLETED"]
    for job, beta in (("0_model.beta=1", 1.0), ("1_model.beta=4", 4.0)):
        metrics = _complete_job(sweep / job)
        assert metrics["val/loss"] == pytest.approx(
            metrics["val/recon"] + beta * metrics["val/kl"], rel=1e-5
        )

    report = run_cli([str(sweep)], tmp_path, data_dir, script="betavae-report")
    assert report.returncode == 0, report.stderr
    assert "2 of 2 jobs finished" in report.stdout
    with (sweep / "summary.csv").open() as summary:
        rows = list(csv.DictReader(summary))
    assert [(row["job"], row["status"]) for row in rows] == [
        ("0_model.beta=1", "finished"),
        ("1_model.beta=4", "finished"),
    ]


def test_a_sweep_asking_for_gpus_the_cluster_lacks_is_refused_before_anything_is_submitted(
    slurm_cluster, fork_server, tmp_path, data_dir
):
    args = ["-m", "hydra/launcher=slurm", *TINY_RUN, "model.beta=1,4"]
    result = run_forked(fork_server, args, tmp_path, data_dir)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "betavae-train: error: hydra.launcher.gpus_per_node=1: the nodes of the cluster have no "
        "GPUs (sinfo lists no gpu resources); add hydra.launcher.gpus_per_node=0 to run the jobs "
        "on their CPUs"
    )
    assert not list(tmp_path.iterdir())


def _test_kl_in_one_process(job_dir: Path) -> float:
    """The best checkpoint's mean KL over the whole test split, without DDP (KL is analytic)."""
    run = load_run(str(job_dir))
    total, count = 0.0, 0
    with torch.no_grad():
        for images, _ in run.datamodule().test_dataloader():
            mu, logvar = run.vae.eval().encode(images)
            total += kl_standard_normal(mu, logvar).sum().item()
            count += len(images)
    return total / count


def test_ddp_runs_as_two_slurm_tasks_in_one_run_directory(slurm_cluster, tmp_path, data_dir):
    single_device = [arg for arg in TINY_RUN if not arg.startswith("trainer.devices=")]
    args = ["-m", *SLURM_CPU, "hydra.launcher.tasks_per_node=2", "trainer=ddp", *single_device]
    result = run_cli(
        [*args, f"trainer.max_epochs={EPOCHS}", "hydra.sweep.dir=sweep"], tmp_path, data_dir
    )

    assert result.returncode == 0, result.stderr
    sweep = tmp_path / "sweep"
    # Two tasks of one SLURM job, ranks 0 and 1 of a gloo process group; only rank 0 writes
    # the job's train.log (Lightning's messages).
    (rank0_log,) = sweep.glob(".submitit/*/*_0_log.err")
    (rank1_log,) = sweep.glob(".submitit/*/*_1_log.err")
    assert "global_rank=1(2)" in rank1_log.with_suffix(".out").read_text()
    log = (sweep / "0/train.log").read_text()
    assert "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2" in log
    assert "Starting with 2 processes" in log
    assert "GLOBAL_RANK: 1" not in log
    # Nothing on either task's stderr: no warning a user cannot act on.
    assert rank0_log.read_text() == rank1_log.read_text() == ""
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".")) == [
        "0",
        "multirun.yaml",
    ]
    metrics = _complete_job(sweep / "0")
    # Each rank stepped through half of the 480 training examples, in batches of 64.
    assert metrics["global_step"] == EPOCHS * 4
    # The test metrics are the whole split's, reduced across the ranks' halves.
    assert metrics["test/kl"] == pytest.approx(_test_kl_in_one_process(sweep / "0"), rel=1e-4)


# Interrupted jobs

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
TIME_LIMIT_CHECK_EVERY_S = 30  # slurmctld's PERIODIC_TIMEOUT
RESTORED = re.compile(r"Restoring states from the checkpoint path at (\S+)")


def _start_sweep(args: list[str], cwd: Path, data_dir: Path) -> subprocess.Popen:
    env = with_data_dir(data_dir)
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


def _start_requeued_now(job_ids: list[str], time_limit_min: int | None = None) -> None:
    """Start requeued jobs at once instead of after SLURM's two-minute hold on them (their
    BeginTime), with `time_limit_min` if given."""
    limit = [] if time_limit_min is None else [f"TimeLimit={time_limit_min}"]
    for job_id in job_ids:
        if slurm_job(job_id, timeout=0).get("Reason") == "BeginTime":
            update = ["scontrol", "update", f"JobId={job_id}", *limit, "StartTime=now"]
            subprocess.run(update, check=True)


def _finish(
    process: subprocess.Popen, job_ids: list[str], time_limit_min: int | None = None
) -> int:
    """Wait for the sweep command, starting its requeued jobs at once."""
    deadline = time.monotonic() + 400
    try:
        while process.poll() is None:
            assert time.monotonic() < deadline, "the sweep did not finish"
            _start_requeued_now(job_ids, time_limit_min)
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
    log = (job_dir / "train.log").read_text()
    assert _consecutive_spans(steps) == [(0, epochs * STEPS_PER_EPOCH - 1)], log
    return attempts


def _consecutive_spans(steps: list[int]) -> list[tuple[int, int]]:
    """The first and last step of each run of consecutive steps: [(0, 1499), (1400, 5999)]
    says steps 1400 to 1499 ran twice, in two lines rather than a diff of 6,000."""
    spans: list[tuple[int, int]] = []
    for step in steps:
        if spans and step == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], step)
        else:
            spans.append((step, step))
    return spans


def _resumed_from(job_dir: Path) -> list[Path]:
    """The checkpoints the job's restarts continued from (not the best one its test loads)."""
    log = (job_dir / "train.log").read_text()
    return [Path(path) for path in RESTORED.findall(log) if not path.endswith("/best.ckpt")]


def _job_stderr(sweep: Path, job_id: str) -> str:
    """What the job's attempts wrote to stderr, where betavae-train says how it stopped."""
    return "".join(log.read_text() for log in sorted(sweep.glob(f".submitit/{job_id}/*_log.err")))


def test_a_job_requeued_and_then_at_its_time_limit_continues_each_time_from_where_it_stopped(
    slurm_cluster, tmp_path, data_dir
):
    """One job stopped twice, each time a different way: `scontrol requeue` in its second
    epoch (SLURM requeues it and sends SIGTERM), then, once its restart trains, its time limit
    (SIGUSR1, and betavae-train requeues it). Every step runs once across the three attempts."""
    # SIGUSR1 59 s before the time limit: a job whose limit is cut to 1 minute is past that
    # point at once, and slurmctld signals it at its next check of the limits.
    epochs = 30
    signal_59s_before = ["hydra.launcher.signal_delay_s=59"]
    args = ["-m", *SLURM_CPU, *signal_59s_before, *TRAINING, f"trainer.max_epochs={epochs}"]
    process = _start_sweep([*args, "hydra.sweep.dir=sweep"], tmp_path, data_dir)
    sweep = tmp_path / "sweep"
    job_dir, last = sweep / "0", sweep / "0/checkpoints/last.ckpt"
    job_id = _slurm_job_id(sweep)
    _wait_for(last.is_file, "the first epoch")
    time.sleep(1)  # into the second epoch

    def restarted() -> bool:
        _start_requeued_now([job_id])
        return len(_resumed_from(job_dir)) == 1

    subprocess.run(["scontrol", "requeue", job_id], check=True)
    _wait_for(restarted, "the restart")
    restored = last.stat().st_mtime_ns
    _wait_for(lambda: last.stat().st_mtime_ns != restored, "an epoch of the restart")
    _signal_at_the_time_limit_within_2s(job_id, slurm_cluster)
    # Started again with the sweep's own time limit, the job finishes.
    assert _finish(process, [job_id], time_limit_min=10) == 0

    job = slurm_job(job_id)
    assert (job["JobState"], job["Restarts"]) == ("COMPLETED", "2")
    _, second, third = _assert_every_step_ran_once(job_dir, epochs)
    # Each restart read the checkpoint written when the attempt before it was stopped.
    assert _resumed_from(job_dir) == [last, last]
    stderr = _job_stderr(sweep, job_id)
    continues = f"job {job_id}, which continues when SLURM starts it again"
    requeued_by_slurm = f"stopped by SIGTERM at step {second[0]}; SLURM requeued {continues}"
    requeued_at_its_limit = f"stopped by SIGUSR1 at step {third[0]}; requeued SLURM {continues}"
    assert f"betavae-train: {requeued_by_slurm}" in stderr
    assert f"betavae-train: {requeued_at_its_limit}" in stderr


def _signal_at_the_time_limit_within_2s(job_id: str, slurm_conf: Path) -> None:
    """Cut a running job's time limit to 1 minute so that slurmctld signals it, letting it run
    only the last 2 s before slurmctld's next check of the limits rather than up to the 30 s
    between two checks (PERIODIC_TIMEOUT, built into SLURM): until then the job is suspended,
    which stops its clock and skips it in the checks. The moment of the next check comes from
    slurmctld's log, which names each check at level debug2 (the slurm_cluster fixture sets it)."""
    subprocess.run(["scontrol", "suspend", job_id], check=True)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=1"], check=True)
    log = slurm_conf.parent / "log/slurmctld.log"

    def checks() -> list[str]:
        return re.findall(r"^\[(\S+)\] debug2: Testing job time limits", log.read_text(), re.M)

    _wait_for(checks, "a check of the time limits in slurmctld's log", timeout=60)
    next_check = datetime.fromisoformat(checks()[-1]).timestamp() + TIME_LIMIT_CHECK_EVERY_S
    while next_check < time.time() + 3:
        next_check += TIME_LIMIT_CHECK_EVERY_S
    time.sleep(next_check - 2 - time.time())
    subprocess.run(["scontrol", "resume", job_id], check=True)


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

    result = run_cli([*args, "resume=auto"], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    assert _run_files(finished) == untouched
    _assert_every_step_ran_once(cancelled, epochs=12)
    assert json.loads((finished / "metrics.json").read_text())["epochs"] == 1
