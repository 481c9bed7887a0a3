"""Sweeps through real sbatch on a local one-node SLURM cluster (`hydra/launcher=slurm`)."""

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import SLURM_CPU, TINY_RUN, event_file_pids, run_cli, run_process, slurm_job

from betavae.loading import load_run
from betavae.vae import kl_standard_normal

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]

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
    slurm_cluster, tmp_path, data_dir
):
    args = ["-m", *SLURM_CPU, *TINY_RUN, f"trainer.max_epochs={EPOCHS}", "model.beta=1,4"]
    result = run_process([*args, "hydra.sweep.dir=sweep"], tmp_path, data_dir)

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
    slurm_cluster, tmp_path, data_dir
):
    args = ["-m", "hydra/launcher=slurm", *TINY_RUN, "model.beta=1,4"]
    result = run_process(args, tmp_path, data_dir)

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
    result = run_process(
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
