"""The README's commands, pasted as a newcomer would: the main one for real (with a one-epoch
override), the others composed, and its mistakes checked against the lines it shows."""

import json
import math
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import TINY_RUN, paste, run_cli, run_process

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_command(marker: str) -> str:
    """The command in the code block after `<!-- marker -->`, as `.ci/run` reads it too."""
    lines = README.read_text().splitlines()
    start = lines.index(f"<!-- {marker} -->")
    return next(line for line in lines[start + 1 :] if line and not line.startswith("```"))


@pytest.mark.slow
def test_readme_main_command_trains_on_the_default_data(tmp_path, data_dir):
    *setup, run = readme_command("run-command").split(" && ")
    program, *args = shlex.split(run)

    assert setup[0].startswith("python3 -m venv")
    assert Path(program).name == "betavae-train"
    # The installed script, as a newcomer runs it: its exit status and all of its output
    # (it ends its process at once once the run is written), on a few batches of each split.
    limits = [f"trainer.limit_{split}_batches=5" for split in ("train", "val", "test")]
    result = run_process([*args, "trainer.max_epochs=1", *limits], tmp_path, data_dir)

    assert result.returncode == 0, result.stderr
    (metrics_file,) = (tmp_path / "outputs").glob("*/*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["epochs"] == 1
    assert math.isfinite(metrics["test/elbo"])
    assert "Run directory:" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("Train it longer: betavae-train ")


def test_readme_test_command_runs_pytest_in_a_fresh_venv():
    command = readme_command("test-command")

    assert command.startswith("python3 -m venv .venv && ")
    assert '.venv/bin/pip install -e ".[dev]"' in command
    assert command.endswith(".venv/bin/pytest")


def _readme_commands() -> list[tuple[str, str | None]]:
    """Every betavae command in the README's code blocks, with the line it is shown to print
    next (None where the README shows no error for it)."""
    lines = README.read_text().splitlines()
    commands, in_block = [], False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            in_block = not in_block
            continue
        command = line.removeprefix("$ ")
        if in_block and re.match(r"betavae-[a-z]+(\s|$)", command):
            after = lines[number + 1] if number + 1 < len(lines) else ""
            commands.append((command, after if ": error: " in after else None))
    return commands


README_COMMANDS = _readme_commands()
# The README's run directories, of many dates and times: replaced by real ones.
_RUN_PATHS = re.compile(r"(outputs|multirun)/\d{4}-\d\d-\d\d/[\d-]+")


@pytest.fixture(scope="module")
def readme_paths(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, tiny_run: Path) -> Path:
    """A directory holding a real `outputs/run` and a real sweep `multirun/sweep`."""
    cwd = tmp_path_factory.mktemp("readme")
    shutil.copytree(tiny_run, cwd / "outputs/run")
    sweep = ["-m", *TINY_RUN, "trainer.max_epochs=1", "model.beta=1,4"]
    swept = run_cli([*sweep, "hydra.sweep.dir=multirun/sweep"], cwd, data_dir)
    assert swept.returncode == 0, swept.stderr
    return cwd


def _pasted(command: str, cwd: Path, data_dir: Path) -> subprocess.CompletedProcess:
    command = _RUN_PATHS.sub(
        lambda m: f"{m.group(1)}/{'run' if m.group(1) == 'outputs' else 'sweep'}", command
    )
    return paste(command, cwd, data_dir)


def _one_job(command: str) -> str:
    """The command without its comment, and a sweep (-m) as its first job: Hydra shows the
    config of one job only."""
    words = re.sub(r"\s+#\s.*$", "", command).split()
    if "-m" not in words:
        return " ".join(words)
    first = [re.sub(r"^([\w./]+)=([^,\[\]'\"]+),.*$", r"\1=\2", word) for word in words]
    return " ".join(word for word in first if word != "-m")


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c, error in README_COMMANDS if error is None])
def test_readme_commands_compose_when_pasted(readme_paths, data_dir, command):
    """Pasted as printed (comments included), each composes: `--cfg job` shows its config,
    so quoting, Hydra's grammar, the groups and the keys are all right."""
    program = command.split()[0]
    if program == "betavae-report":
        result = _pasted(command, readme_paths, data_dir)
    else:
        result = _pasted(f"{_one_job(command)} --cfg job", readme_paths, data_dir)

    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "error"), [(c, e) for c, e in README_COMMANDS if e is not None and "…" not in e]
)
def test_readme_mistakes_print_the_line_the_readme_shows(readme_paths, data_dir, command, error):
    result = _pasted(command, readme_paths, data_dir)

    assert result.returncode == 2
    assert result.stderr.strip() == error
