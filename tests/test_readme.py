"""The README's first command, run as a newcomer would (with a one-epoch override)."""

import json
import math
import shlex
from pathlib import Path

import pytest
from helpers import run_cli

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
    result = run_cli([*args, "trainer.max_epochs=1"], cwd=tmp_path, data_dir=data_dir)

    assert result.returncode == 0, result.stderr
    (metrics_file,) = (tmp_path / "outputs").glob("*/*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["epochs"] == 1
    assert math.isfinite(metrics["test/elbo"])
    assert "Run directory:" in result.stdout


def test_readme_test_command_runs_pytest_in_a_fresh_venv():
    command = readme_command("test-command")

    assert command.startswith("python3 -m venv .venv && ")
    assert '.venv/bin/pip install -e ".[dev]"' in command
    assert command.endswith(".venv/bin/pytest")
