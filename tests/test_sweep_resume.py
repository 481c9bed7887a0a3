"""An interrupted sweep continued with `resume=auto`: nothing lost, nothing run twice."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from forkserver import ForkServer
from helpers import TINY_RUN, run_cli, scalars, start_train, tensorboard_run
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from betavae.training.tensorboard_hparams import HPARAMS_FILE

pytestmark = pytest.mark.slow

EPOCHS = 3
SWEEP = [
    "-m",
    *TINY_RUN,
    f"trainer.max_epochs={EPOCHS}",
    "model.beta=1,2,4",
    "hydra.sweep.dir=sweep",
]
FIRST, INTERRUPTED, NEVER_STARTED = "0_model.beta=1", "1_model.beta=2", "2_model.beta=4"


def _kill_sweep_once_a_checkpoint_exists(server: ForkServer, cwd: Path, data_dir: Path) -> None:
    """SIGKILL the whole sweep (process group) right after the second job's first checkpoint.

    Lightning writes checkpoints atomically (temporary file, then rename), so the file being
    there means it is complete; the job still has two epochs to go.
    """
    process = start_train(server, SWEEP, cwd, data_dir, capture=False, new_session=True)
    checkpoint = cwd / "sweep" / INTERRUPTED / "checkpoints/last.ckpt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _mtimes(directory: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


def _contents(directory: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.rglob("*") if p.is_file()}


def _metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def killed_sweep(
    tmp_path_factory: pytest.TempPathFactory, fork_server: ForkServer, data_dir: Path
) -> Path:
    """The sweep as the SIGKILL left it, read-only: each test continues a copy of its own."""
    cwd = tmp_path_factory.mktemp("killed")
    _kill_sweep_once_a_checkpoint_exists(fork_server, cwd, data_dir)
    return cwd / "sweep"


def _copy_of(killed_sweep: Path, cwd: Path) -> Path:
    """The killed sweep at `cwd`/sweep, as the kill left it: `cp -a` keeps the files' times and
    the hard link between a job's best.ckpt and last.ckpt."""
    subprocess.run(["cp", "-a", str(killed_sweep), str(cwd / "sweep")], check=True)
    return cwd / "sweep"


def test_rerun_with_resume_auto_skips_finished_continues_interrupted_starts_the_rest(
    killed_sweep, tmp_path, data_dir
):
    sweep = _copy_of(killed_sweep, tmp_path)
    assert (sweep / FIRST / "metrics.json").is_file()
    assert not (sweep / INTERRUPTED / "metrics.json").exists()
    assert not (sweep / NEVER_STARTED).exists()
    finished_files = _mtimes(sweep / FIRST / "checkpoints") | {
        sweep / FIRST / "metrics.json": (sweep / FIRST / "metrics.json").stat().st_mtime_ns
    }
    interrupted_at = torch.load(sweep / INTERRUPTED / "checkpoints/last.ckpt", weights_only=True)

    # A changed setting would continue another experiment under these names: refused before
    # Hydra writes anything (its multirun.yaml and the jobs' .hydra/ records included).
    before = _contents(sweep)
    changed = run_cli([*SWEEP, "data.num_examples=700", "resume=auto"], tmp_path, data_dir)
    assert changed.returncode == 2
    (line,) = changed.stderr.strip().splitlines()
    assert line.startswith(
        f"betavae-train: error: resume=auto: sweep/{FIRST} was started with another config "
        "(data.num_examples=600, now 700); rerun the sweep's own command: betavae-train -m "
    )
    assert line.endswith(
        " hydra.sweep.dir=sweep resume=auto, or start a new sweep without resume=auto"
    )
    assert _contents(sweep) == before

    result = run_cli([*SWEEP, "resume=auto"], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [
        FIRST,
        INTERRUPTED,
        NEVER_STARTED,
    ]
    assert f"Skipping sweep/{FIRST}: finished already" in result.stdout
    for job in (FIRST, INTERRUPTED, NEVER_STARTED):
        assert _metrics(sweep / job)["epochs"] == EPOCHS
    assert {p: _mtimes(p.parent)[p] for p in finished_files} == finished_files
    # The interrupted job went on from its checkpoint, and no epoch of it ran twice.
    steps = _metrics(sweep / FIRST)["global_step"]
    assert 0 < interrupted_at["global_step"] < steps
    assert _metrics(sweep / INTERRUPTED)["global_step"] == steps
    assert f"Continuing from sweep/{INTERRUPTED}/checkpoints/last.ckpt" in result.stdout
    val_steps = [step for step, _ in scalars(tensorboard_run(sweep / INTERRUPTED), "val/elbo")]
    assert val_steps == sorted(set(val_steps))
    assert len(val_steps) == EPOCHS
    # HPARAMS: the same experiment in every job, with every value of the sweep.
    experiments = {
        tensorboard_run(sweep / job).SummaryMetadata("_hparams_/experiment").plugin_data.content
        for job in (FIRST, INTERRUPTED, NEVER_STARTED)
    }
    assert len(experiments) == 1
    (experiment,) = (HParamsPluginData.FromString(content).experiment for content in experiments)
    (beta,) = (info for info in experiment.hparam_infos if info.name == "model.beta")
    assert list(beta.domain_discrete) == [1, 2, 4]


def test_a_job_trained_longer_on_its_own_counts_as_ended_when_its_sweep_is_finished(
    killed_sweep, tmp_path, data_dir
):
    """Train one job of an interrupted sweep longer, then finish the sweep with its command:
    the job is skipped, its files untouched; with a higher trainer.max_epochs in the sweep's
    command every ended job is trained to it."""
    sweep = _copy_of(killed_sweep, tmp_path)
    longer = run_cli(
        [f"resume='sweep/{FIRST}'", f"trainer.max_epochs={EPOCHS + 1}"], tmp_path, data_dir
    )
    assert longer.returncode == 0, longer.stderr
    extended = _contents(sweep / FIRST)
    assert _metrics(sweep / FIRST)["epochs"] == EPOCHS + 1

    finished = run_cli([*SWEEP, "resume=auto"], tmp_path, data_dir)

    assert finished.returncode == 0, finished.stderr
    assert (
        f"Skipping sweep/{FIRST}: finished already, trained to {EPOCHS + 1} epochs (this "
        f"command: {EPOCHS}) (metrics.json is there)" in finished.stdout
    )
    for path, (content, _) in extended.items():
        if ".hydra" not in path.parts and path.name not in ("train.log", HPARAMS_FILE):
            assert path.read_bytes() == content, path
    assert [_metrics(sweep / job)["epochs"] for job in (INTERRUPTED, NEVER_STARTED)] == [
        EPOCHS,
        EPOCHS,
    ]

    everything_longer = [*SWEEP, f"trainer.max_epochs={EPOCHS + 1}", "resume=auto"]
    result = run_cli(everything_longer, tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    assert f"Skipping sweep/{FIRST}: finished already (metrics.json is there)" in result.stdout
    for job in (FIRST, INTERRUPTED, NEVER_STARTED):
        assert _metrics(sweep / job)["epochs"] == EPOCHS + 1
        assert (sweep / job / f"metrics-epoch{EPOCHS}.json").is_file()


def test_a_preset_sweep_is_continued_by_its_own_command_with_resume_auto(tmp_path, data_dir):
    """The sweep an experiment's config asks for (its hydra.sweeper.params) numbers the jobs
    as the command line's does: its rerun with resume=auto plans each job as that job."""
    preset = [
        "-m",
        "experiment=sprites_study",
        "hydra.sweeper.params.seed=0",
        "hydra.sweeper.params.objective='beta-1,beta_tc-4'",
        "hydra/launcher=basic",
        *TINY_RUN,
        "model.network=mlp",
        "trainer.max_epochs=1",
        "hydra.sweep.dir=sweep",
    ]
    assert run_cli(preset, tmp_path, data_dir).returncode == 0

    result = run_cli([*preset, "resume=auto"], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    for job in ("0_objective=beta-1,seed=0", "1_objective=beta_tc-4,seed=0"):
        assert f"Skipping sweep/{job}: finished already" in result.stdout
