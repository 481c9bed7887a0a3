"""Every command betavae prints, pasted into bash as printed: the run it starts is the same
experiment as the one it came from, but for the settings it names. (The command a stopped
sweep prints is pasted in test_interruptions, which stops one.)"""

import json
from pathlib import Path

import pytest
from helpers import TINY_RUN, paste, run_cli, run_settings
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow

# The run's own settings, away from the defaults and from TINY_RUN's, so that a printed command
# that dropped them would show.
RUN = [*TINY_RUN, "data.num_examples=500", "model.beta=2", "trainer.max_epochs=1"]


def _differing(a: Path, b: Path) -> set[str]:
    return _differing_from(run_settings(a), b)


def _new_runs(cwd: Path, known: set[Path]) -> list[Path]:
    return sorted(p.parent for p in cwd.glob("outputs/*/*/config.yaml") if p.parent not in known)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, str]:
    """A finished run with settings of its own, and what it printed."""
    cwd = tmp_path_factory.mktemp("printed")
    result = run_cli(RUN, cwd, data_dir)
    assert result.returncode == 0, result.stderr
    (run_dir,) = _new_runs(cwd, set())
    return run_dir, result.stdout


def test_train_it_longer_continues_the_same_run(original, data_dir):
    run_dir, printed = original
    command = printed.strip().splitlines()[-1].removeprefix("Train it longer: ")
    assert (
        command
        == f"betavae-train resume={run_dir.relative_to(run_dir.parents[2])} trainer.max_epochs=2"
    )
    before = run_settings(run_dir)

    result = paste(command, run_dir.parents[2], data_dir)

    assert result.returncode == 0, result.stderr
    assert _differing_from(before, run_dir) == {"trainer.max_epochs"}
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2


def _differing_from(before: dict, run_dir: Path) -> set[str]:
    after = run_settings(run_dir)
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def test_the_fork_a_refused_resume_suggests_keeps_the_runs_settings(original, data_dir):
    run_dir, _ = original
    cwd = run_dir.parents[2]
    known = set(_new_runs(cwd, set()))
    refused = run_cli([f"resume={run_dir}", "model.beta=4"], cwd, data_dir)
    assert refused.returncode == 2
    command = refused.stderr.strip().split(", start a new run from its checkpoint: ")[1]

    result = paste(command, cwd, data_dir)

    assert result.returncode == 0, result.stderr
    (forked,) = _new_runs(cwd, known)
    assert _differing(run_dir, forked) == {"model.beta", "trainer.max_epochs"}
    assert OmegaConf.load(forked / "config.yaml").ckpt_path.endswith("checkpoints/last.ckpt")
    assert f"Starting from {run_dir.relative_to(cwd)}/checkpoints/last.ckpt" in result.stdout


def test_the_divergence_line_suggests_the_run_with_a_lower_learning_rate(tmp_path, data_dir):
    diverged = run_cli([*RUN, "model.lr=1e12"], tmp_path, data_dir)
    assert diverged.returncode == 3
    (run_dir,) = _new_runs(tmp_path, set())
    command = diverged.stderr.strip().splitlines()[-1].split("try a lower learning rate: ")[1]
    command = command.split(" (or add ")[0]

    result = paste(command, tmp_path, data_dir)

    assert result.returncode in (0, 3), result.stderr  # 1e11 may diverge too: it ran
    (again,) = _new_runs(tmp_path, {run_dir})
    assert _differing(run_dir, again) == {"model.lr"}
    assert OmegaConf.load(again / "config.yaml").model.lr == pytest.approx(1e11)
