"""Hydra callbacks of betavae-train (configured in conf/hydra/default.yaml).

- Every run and every sweep gets a directory of its own. The default names are timestamps to
  the second, so two runs started in the same second would share one; the directory is
  created here, exclusively, before anything is written, and a name already taken gets a
  suffix (`19-46-56_2`). A directory given on the command line (`hydra.run.dir=`,
  `hydra.sweep.dir=`, or the one `resume=` continues in) is used as it is.
- A sweep in which a job diverged ends with a non-zero exit status once every job has run.
"""

import itertools
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from betavae.commands import hydra_quoted, shell_word
from betavae.sweeps.jobs import read_sweep
from betavae.training.run_dir import DIVERGED
from betavae.user_paths import shown_path

DIVERGED_EXIT = 3
# The directory of the sweep this process runs, once Hydra has set it up.
SWEEP_DIR: Path | None = None


def claim_new_directory(path: Path) -> Path:
    """Create `path`, or `path_2`, `path_3`, ... if taken; atomic, so no two callers get one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        candidate = path if number == 1 else path.with_name(f"{path.name}_{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def _given(config: DictConfig, key: str) -> bool:
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in config.hydra.overrides.hydra)


class UniqueRunDirectory(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _given(config, "hydra.run.dir"):
            return
        claimed = claim_new_directory(Path(config.hydra.run.dir))
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.run.dir = str(claimed)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global SWEEP_DIR
        SWEEP_DIR = Path(config.hydra.sweep.dir)
        if _given(config, "hydra.sweep.dir"):
            return
        claimed = claim_new_directory(SWEEP_DIR)
        SWEEP_DIR = claimed
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.sweep.dir = str(claimed)
            # Each job's config is composed again from the overrides: give it the claim too.
            config.hydra.overrides.hydra.append(f"hydra.sweep.dir={hydra_quoted(claimed)}")


class SweepExitStatus(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = read_sweep(sweep_dir)
        diverged = [job.directory.name for job in jobs if job.status == DIVERGED]
        if diverged:
            print(
                f"betavae-train: {len(diverged)} of {len(jobs)} jobs diverged "
                f"({', '.join(diverged)}); the others ran to the end: betavae-report "
                f"{shell_word(shown_path(sweep_dir))} compares them",
                file=sys.stderr,
            )
            sys.exit(DIVERGED_EXIT)
