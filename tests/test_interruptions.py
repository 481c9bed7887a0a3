"""Runs stopped by signals, killed, diverging or started together: nothing lost or misreported.

A run stopped from outside is a `betavae-train` process of its own (forked by the tests'
server, forkserver.py, which skips its imports); signals come from outside, as a scheduler or
a person would send them.
"""

import json
import shlex
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch
from forkserver import ForkedProcess
from helpers import TINY_RUN, event_file_pids, paste, run_cli, run_settings, start_train
from omegaconf import OmegaConf

from betavae.lifecycle.commands import shell_word

pytestmark = pytest.mark.slow

# 60 steps per epoch (480 training images in batches of 8), so a signal lands mid-epoch; a
# checkpoint every 5 steps shows the test that training is under way.
LONG_EPOCHS = [*TINY_RUN, "data.batch_size=8", "trainer.max_epochs=2"]
EVERY_5_STEPS = "callbacks.checkpoint.every_n_train_steps=5"


def _wait_for(path: Path, process: ForkedProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


def _step(checkpoint: Path) -> int:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _contents(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict:
    """The metrics of the run the interrupted ones must end up as."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli([*LONG_EPOCHS, EVERY_5_STEPS, "hydra.run.dir=run"], cwd, data_dir)
    assert result.returncode == 0, result.stderr
    return _metrics(cwd / "run")


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_saves_that_step_and_resume_ends_as_if_never_stopped(
    uninterrupted, fork_server, tmp_path, data_dir, sig, status
):
    run = tmp_path / "run"
    args = [*LONG_EPOCHS, EVERY_5_STEPS, "hydra.run.dir=run"]
    process = start_train(fork_server, args, tmp_path, data_dir)
    _wait_for(run / "checkpoints/last.ckpt", process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == status
    line = stderr.strip().splitlines()[-1]
    prefix = f"betavae-train: stopped by {sig.name} at step "
    assert line.startswith(prefix), stderr
    step = int(line.removeprefix(prefix).split(";")[0])
    assert 5 <= step < 60  # inside the first epoch
    assert line.endswith(f"; continue with: betavae-train resume={run.name}")
    assert _step(run / "checkpoints/last.ckpt") == step
    assert not (run / "metrics.json").exists()

    # The printed command, pasted into a shell.
    command = line.split("continue with: ")[1]
    resumed = paste(command, tmp_path, data_dir)

    assert resumed.returncode == 0, resumed.stderr
    metrics = _metrics(run)
    assert metrics["global_step"] == uninterrupted["global_step"]
    assert metrics["test/elbo"] == pytest.approx(uninterrupted["test/elbo"], abs=1e-3)
    assert metrics["val/elbo"] == pytest.approx(uninterrupted["val/elbo"], abs=1e-3)


def _last_checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)


def test_a_run_killed_by_sigkill_resumes_from_its_last_step_checkpoint_exactly(
    fork_server, tmp_path, data_dir
):
    """A run killed mid-epoch (SIGKILL: no handler runs, no checkpoint is saved on the way
    out) and resumed from its last step checkpoint ends with the very weights and optimizer
    state of a run never stopped. FactorVAE, for its second network and Adam moments."""
    # Checkpoints every 20 steps: each holds the 5-million-weight discriminator and its moments.
    every_20 = "callbacks.checkpoint.every_n_train_steps=20"
    one_epoch = [*TINY_RUN, "data.batch_size=8", "trainer.max_epochs=1", every_20]
    args = [*one_epoch, "model.objective=factor_vae", "hydra.run.dir=run"]
    (tmp_path / "straight").mkdir()
    (tmp_path / "killed").mkdir()
    straight = run_cli(args, tmp_path / "straight", data_dir)
    assert straight.returncode == 0, straight.stderr
    run = tmp_path / "killed/run"
    process = start_train(fork_server, args, tmp_path / "killed", data_dir)
    _wait_for(run / "checkpoints/last.ckpt", process)
    process.kill()
    process.communicate()
    killed_at = _step(run / "checkpoints/last.ckpt")

    resumed = run_cli([f"resume={run}"], tmp_path / "killed", data_dir)

    assert resumed.returncode == 0, resumed.stderr
    assert killed_at % 20 == 0 and killed_at < 60  # inside the epoch of 60 steps
    expected = _last_checkpoint(tmp_path / "straight/run")
    got = _last_checkpoint(run)
    assert got["global_step"] == expected["global_step"] == 60
    assert any(name.startswith("discriminator.") for name in got["state_dict"])
    for name, weight in expected["state_dict"].items():
        assert torch.equal(got["state_dict"][name], weight), name
    expected_adam, got_adam = expected["optimizer_states"][0], got["optimizer_states"][0]
    assert got_adam["param_groups"] == expected_adam["param_groups"]
    for index, moments in expected_adam["state"].items():
        for key, value in moments.items():
            assert torch.equal(got_adam["state"][index][key], value), (index, key)
    straight_metrics = _metrics(tmp_path / "straight/run")
    for key in ("val/elbo", "test/elbo", "test/loss"):
        assert _metrics(run)[key] == straight_metrics[key]
    assert not list(run.rglob(".*.tmp-*"))  # no staging file of the killed writes is left


def test_a_truncated_last_checkpoint_falls_back_to_the_newest_readable_one(tmp_path, data_dir):
    run = tmp_path / "run"
    first = run_cli([*TINY_RUN, "trainer.max_epochs=2", "hydra.run.dir=run"], tmp_path, data_dir)
    assert first.returncode == 0, first.stderr
    (run / "metrics.json").unlink()  # as if it had been stopped just before the end
    last = run / "checkpoints/last.ckpt"
    data = last.read_bytes()
    last.unlink()  # best.ckpt is a hard link to it: give last.ckpt bytes of its own
    last.write_bytes(data[: len(data) // 2])
    best_step = _step(run / "checkpoints/best.ckpt")

    resumed = run_cli([f"resume={run}", "trainer.max_epochs=3"], tmp_path, data_dir)

    assert resumed.returncode == 0, resumed.stderr
    notice = (
        "resume: run/checkpoints/last.ckpt cannot be read; continuing from "
        f"run/checkpoints/best.ckpt (step {best_step}), the newest readable checkpoint of the run"
    )
    assert notice in resumed.stdout
    assert _metrics(run)["epochs"] == 3
    assert _step(last) == _metrics(run)["global_step"]


def test_resume_of_a_finished_run_changes_nothing(tmp_path, data_dir):
    run = tmp_path / "run"
    first = run_cli([*TINY_RUN, "trainer.max_epochs=1", "hydra.run.dir=run"], tmp_path, data_dir)
    assert first.returncode == 0, first.stderr
    before = _contents(run)

    again = run_cli([f"resume={run}"], tmp_path, data_dir)

    assert again.returncode == 0
    assert again.stdout.strip() == (
        "run is finished (trainer.max_epochs=1); nothing to do. To train it longer: "
        "betavae-train resume=run trainer.max_epochs=2"
    )
    assert _contents(run) == before


def test_a_diverging_run_stops_at_once_and_is_recorded_as_diverged(tmp_path, data_dir):
    result = run_cli([*TINY_RUN, "model.lr=1e12", "hydra.run.dir=run"], tmp_path, data_dir)

    assert result.returncode == 3
    metrics = _metrics(tmp_path / "run")
    assert metrics["status"] == "diverged"
    assert metrics["diverged_at_step"] <= 3
    assert result.stderr.strip().splitlines()[-1] == (
        f"betavae-train: run diverged at step {metrics['diverged_at_step']} (training loss "
        f"{metrics['diverged_loss']}); try a lower learning rate: betavae-train "
        f"{' '.join(shell_word(o) for o in TINY_RUN)} model.lr=1e+11 "
        "(or add trainer.gradient_clip_val=1.0)"
    )
    again = run_cli([f"resume={tmp_path / 'run'}"], tmp_path, data_dir)
    assert again.returncode == 2
    assert "diverged at step" in again.stderr and "is final" in again.stderr


def test_a_sweep_with_a_diverging_job_runs_the_others_and_says_so(tmp_path, data_dir):
    sweep = ["-m", *TINY_RUN, "trainer.max_epochs=1", "model.lr=0.001,1e12,0.002"]
    result = run_cli([*sweep, "hydra.sweep.dir=sweep"], tmp_path, data_dir)

    assert result.returncode == 3
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    statuses = {job: _metrics(tmp_path / "sweep" / job)["status"] for job in jobs}
    assert list(statuses.values()) == ["finished", "diverged", "finished"]
    assert result.stderr.strip().splitlines()[-1] == (
        f"betavae-train: 1 of 3 jobs diverged ({jobs[1]}); the others ran to the end: "
        "betavae-report sweep compares them"
    )
    report = run_cli(["sweep"], tmp_path, data_dir, script="betavae-report")
    assert report.returncode == 0, report.stderr
    assert "| diverged " in report.stdout
    before = _contents(tmp_path / "sweep")

    rerun = run_cli([*sweep, "hydra.sweep.dir=sweep", "resume=auto"], tmp_path, data_dir)

    assert rerun.returncode == 3  # the diverged job is not trained again, and still counts
    assert f"Skipping sweep/{jobs[1]}: diverged already" in rerun.stdout
    for job in jobs:
        metrics = tmp_path / "sweep" / job / "metrics.json"
        assert metrics.read_bytes() == before[metrics]


def test_a_signal_stops_a_sweep_which_the_printed_command_continues_with_its_settings(
    fork_server, tmp_path, data_dir
):
    sweep = ["-m", *LONG_EPOCHS, EVERY_5_STEPS, "model.beta=1,4", "hydra.sweep.dir=sweep"]
    process = start_train(fork_server, sweep, tmp_path, data_dir)
    _wait_for(tmp_path / "sweep/0_model.beta=1/checkpoints/last.ckpt", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 143
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("betavae-train: stopped by SIGTERM at step ")
    command = line.split("continue with: ")[1]
    assert shlex.split(command)[-2:] == ["hydra.sweep.dir=sweep", "resume=auto"]
    assert not (tmp_path / "sweep/1_model.beta=4").exists()
    stopped = run_settings(tmp_path / "sweep/0_model.beta=1")

    resumed = paste(command, tmp_path, data_dir)

    assert resumed.returncode == 0, resumed.stderr
    for job in ("0_model.beta=1", "1_model.beta=4"):
        assert _metrics(tmp_path / "sweep" / job)["global_step"] == 120
    # The same experiment: the stopped job's settings unchanged, and the job it had not
    # started yet has the sweep's own (batches of 8, not TINY_RUN's 64) and its β.
    assert run_settings(tmp_path / "sweep/0_model.beta=1") == stopped
    started = run_settings(tmp_path / "sweep/1_model.beta=4")
    assert (started["model.beta"], started["data.batch_size"]) == (4, 8)
    assert {**started, "model.beta": 1} == stopped


def test_two_runs_started_together_get_a_directory_each(fork_server, tmp_path, data_dir):
    one_epoch = [*TINY_RUN, "trainer.max_epochs=1"]
    processes = {
        beta: start_train(fork_server, [*one_epoch, f"model.beta={beta}"], tmp_path, data_dir)
        for beta in (1, 4)
    }
    outputs = {beta: process.communicate(timeout=300) for beta, process in processes.items()}

    for beta, process in processes.items():
        assert process.returncode == 0, outputs[beta][1]
    runs = sorted(path.parent for path in (tmp_path / "outputs").glob("*/*/config.yaml"))
    assert len(runs) == 2
    for run in runs:
        printed = outputs[int(OmegaConf.load(run / "config.yaml").model.beta)][0]
        assert f"Run directory:   {run.relative_to(tmp_path)}\n" in printed
        assert len(event_file_pids(run)) == 1  # one process wrote its TensorBoard run
        assert _metrics(run)["status"] == "finished"


def test_a_run_started_in_the_second_of_an_ended_run_gets_a_directory_of_its_own(
    tmp_path, data_dir
):
    # An ended run in the directory of every second this run may start in: a run that
    # diverged at once, or a script starting runs one after another, leaves such a directory.
    now = datetime.now()
    seconds = (now + timedelta(seconds=offset) for offset in range(10))
    taken = {tmp_path / "outputs" / f"{t:%Y-%m-%d}" / f"{t:%H-%M-%S}" for t in seconds}
    for run in taken:
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("seed: 0\n")
        (run / "metrics.json").write_text('{"status": "diverged"}\n')

    result = run_cli([*TINY_RUN, "model.lr=1e12"], tmp_path, data_dir)

    assert result.returncode == 3, result.stderr  # it ran, and diverged as asked
    (new,) = {path.parent for path in (tmp_path / "outputs").glob("*/*/config.yaml")} - taken
    assert new.parent / new.name.removesuffix("_2") in taken
    for run in taken:
        assert sorted(path.name for path in run.iterdir()) == ["config.yaml", "metrics.json"]
        assert (run / "config.yaml").read_text() == "seed: 0\n"
