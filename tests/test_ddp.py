"""`trainer=ddp` on CPU (gloo, 2 processes): alone, and inside a `-m` sweep."""

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_RUN, event_file_pids, run_cli, run_forked

from betavae.training.tensorboard_hparams import HPARAMS_FILE

pytestmark = pytest.mark.slow

DDP = [
    *(arg for arg in TINY_RUN if not arg.startswith("trainer.devices=")),
    "trainer=ddp",
    "trainer.devices=2",
    "trainer.max_epochs=2",
]
RUN_FILES = ("config.yaml", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt")
# TINY_RUN: 600 sprites, 10% validation and 10% test, batches of 64.
TRAIN_EXAMPLES, BATCH = 480, 64


def _assert_complete(run_dir: Path) -> dict:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), (run_dir, name)
    assert len(event_file_pids(run_dir)) == 1  # rank 0 alone writes
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Each of the 2 ranks steps through half the training set: the data really is split.
    steps_per_epoch = -(-TRAIN_EXAMPLES // (2 * BATCH))
    assert metrics["global_step"] == 2 * steps_per_epoch
    assert metrics["val/elbo"] == pytest.approx(metrics["val/recon"] + metrics["val/kl"], rel=1e-5)
    return metrics


def test_a_single_ddp_run_writes_one_complete_run_directory(fork_server, tmp_path, data_dir):
    result = run_forked(fork_server, DDP, tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["outputs"]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    metrics = _assert_complete(runs[0])
    assert metrics["val/loss"] == pytest.approx(metrics["val/recon"] + metrics["val/kl"], rel=1e-5)
    assert result.stdout.count("Trained 2 epochs") == 1  # rank 0 alone reports


def test_ddp_inside_a_sweep_runs_each_job_once_in_its_own_directory(
    fork_server, tmp_path, data_dir
):
    """Each job of a sweep on two DDP ranks, FactorVAE's discriminator and DIP-VAE's penalty,
    trains in its own directory and steps once per batch. The β-VAE's DDP run is the test
    above: each job of a sweep is two more processes, about 7 s of CPU."""
    # The default, time-stamped sweep directory: ranks that re-ran the sweep command on their
    # own would compose another one a few seconds later.
    objectives = "model.objective=factor_vae,dip_vae_ii"
    result = run_forked(fork_server, ["-m", *DDP, objectives], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["multirun"]
    (sweep,) = list((tmp_path / "multirun").glob("*/*"))
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == [f"{n}_model.objective={o}" for n, o in enumerate(objectives[16:].split(","))]
    assert result.stdout.count("Trained 2 epochs") == 2
    # One optimizer step per batch, the discriminator's included (not two, as two optimizers
    # under Lightning's manual optimization would count).
    steps = _assert_complete(sweep / jobs[0])["global_step"]
    checkpoint = torch.load(sweep / jobs[0] / "checkpoints/last.ckpt", weights_only=True)
    adam = checkpoint["optimizer_states"][0]
    critic_group = adam["param_groups"][1]
    assert critic_group["lr"] == 1e-4
    assert {adam["state"][i]["step"].item() for i in critic_group["params"]} == {steps}
    dip = _assert_complete(sweep / jobs[1])
    assert dip["val/loss"] > dip["val/elbo"]  # the DIP penalty, on each rank's batch


def test_ddp_sweeps_m2_over_the_labels_per_class_and_the_report_shows_its_accuracy(
    fork_server, tmp_path, data_dir
):
    m2 = ["model.objective=m2", "data.labels_per_class=2,70", "hydra.sweep.dir=sweep"]
    result = run_forked(fork_server, ["-m", *DDP, *m2], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    for job in ("0_data.labels_per_class=2", "1_data.labels_per_class=70"):
        metrics = json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())
        # Each rank steps through half the unlabelled images; 6 or 210 are labelled.
        assert 0 <= metrics["test/accuracy"] <= 1
        assert metrics["val/elbo"] == pytest.approx(metrics["val/recon"] + metrics["val/kl"])
    report = run_cli(["sweep"], tmp_path, data_dir, script="betavae-report")
    assert report.returncode == 0, report.stderr
    assert " test_accuracy " in report.stdout.splitlines()[0]
    hparams = (tmp_path / "sweep/0_data.labels_per_class=2" / HPARAMS_FILE).read_bytes()
    assert b"val/accuracy" in hparams  # a metric of the sweep's HPARAMS experiment
