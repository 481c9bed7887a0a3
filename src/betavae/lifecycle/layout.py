"""What a run directory holds, and its small records: config.yaml, metrics.json, its status.

Imports nothing heavy: the train app plans with it before torch is imported.
"""

import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from betavae.errors import UserError
from betavae.lifecycle.atomic_files import write_text_atomically
from betavae.user_paths import user_path

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.ckpt"
LAST_NAME = "last.ckpt"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/{LAST_NAME}"
BEST_CHECKPOINT = f"{CHECKPOINT_DIR}/{BEST_NAME}"
# TensorBoard's files, in the run directory itself (betavae.training.tensorboard).
TENSORBOARD_FILES = "events.out.tfevents.*"
# Hydra's record of the invocation that started the run (or last ran its sweep job): the
# command line's overrides, and the config they composed.
HYDRA_DIR = ".hydra"
HYDRA_OVERRIDES = f"{HYDRA_DIR}/overrides.yaml"
HYDRA_CONFIG = f"{HYDRA_DIR}/config.yaml"
HYDRA_SETTINGS = f"{HYDRA_DIR}/hydra.yaml"
# Hydra's record of a sweep, in the sweep directory: the command's overrides.
SWEEP_RECORD = "multirun.yaml"

# `resume=auto`: continue whatever this job's directory holds (used to rerun a sweep).
AUTO_RESUME = "auto"

# Settings of where a run runs and how it is watched, saved and reported, not of what it
# trains: a continued run may take other values of them (other devices, another data cache,
# pictures less often), and they never make it another experiment.
_NOT_EXPERIMENT = (
    "resume",
    "optimized_metric",
    "paths.",
    "logger.",
    "callbacks.",
    "data.data_dir",
    "data.num_workers",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.enable_progress_bar",
)

# metrics.json's "status": written last, its presence means "do not run this again".
FINISHED = "finished"
DIVERGED = "diverged"


@dataclass(frozen=True)
class CheckpointFacts:
    """What a checkpoint file says about where its run is, without its tensors."""

    path: Path
    step: int
    epochs: int
    """Epochs trained to their end when it was written."""


def is_experiment_key(key: str) -> bool:
    """Whether a (flat, dotted) config key is part of the run's experiment."""
    return not key.startswith(_NOT_EXPERIMENT)


def is_run(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def require_run_dir(path: Path, key: str) -> Path:
    if not is_run(path):
        raise UserError(
            f"{key}={path}: not a betavae run directory (no {CONFIG_FILE} in it); "
            "pass a directory made by betavae-train, e.g. outputs/<date>/<time>"
        )
    return path


def locate_run(run: str | None, key: str = "run") -> tuple[Path, Path]:
    """(run directory, checkpoint) of `run=<run dir or a .ckpt inside its checkpoints/>`: a run
    directory means its best checkpoint. A checkpoint must sit in its run's `checkpoints/`
    folder, since the run's config (above it) says which data the model was trained on.
    Checked without torch, so that a wrong path is reported at once."""
    if run is None:
        raise UserError(
            f"{key} is missing; pass {key}=<run dir> or {key}=<run dir>/{BEST_CHECKPOINT}"
        )
    path = user_path(run)
    if path.is_dir():
        run_dir = require_run_dir(path, key)
        checkpoint = run_dir / BEST_CHECKPOINT
        if not checkpoint.is_file():
            raise UserError(
                f"{key}={path}: {BEST_CHECKPOINT} is missing (the run stopped before its first "
                f"checkpoint); pass {key}=<a .ckpt file of the run> or train it again"
            )
        return run_dir, checkpoint
    if path.is_file():
        run_dir = path.parent.parent
        if path.parent.name != CHECKPOINT_DIR or not is_run(run_dir):
            raise UserError(
                f"{key}={path}: not inside a run's {CHECKPOINT_DIR}/ folder, so the run's "
                f"{CONFIG_FILE} is unknown; pass the run directory or a checkpoint inside it"
            )
        return run_dir, path
    raise UserError(
        f"{key}={path}: no such file or directory; pass a run directory made by "
        "betavae-train (outputs/<date>/<time>) or a .ckpt file inside its checkpoints/"
    )


def sweep_of(run_dir: Path) -> Path | None:
    """The sweep a run is a job of, as Hydra recorded how it started (a job continued on its
    own with `resume=<job dir>` stays its sweep's); None for a single run."""
    record = run_dir / HYDRA_SETTINGS
    if not record.is_file():
        return None
    settings = yaml.load(record.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return run_dir.parent if settings["hydra"].get("mode") == "MULTIRUN" else None


def require_checkpoint_file(path: Path, key: str) -> None:
    """The first check of a checkpoint path, made before torch is imported to read it."""
    if not path.is_file():
        raise UserError(f"{key}={path}: no such file; pass a .ckpt written by betavae-train")


def read_config(run_dir: Path) -> DictConfig:
    """The run's own resolved config: what it trains, including what its life changed (a
    raised trainer.max_epochs)."""
    return OmegaConf.load(run_dir / CONFIG_FILE)


def save_config(run_dir: Path, cfg: DictConfig) -> None:
    write_text_atomically(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / METRICS_FILE).read_text())


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    path = run_dir / METRICS_FILE
    write_text_atomically(path, json.dumps(metrics, indent=2) + "\n")
    return path


def run_status(run_dir: Path) -> str | None:
    """FINISHED or DIVERGED once the run has ended (metrics.json is there), else None."""
    if not (run_dir / METRICS_FILE).is_file():
        return None
    return read_metrics(run_dir).get("status", FINISHED)


def set_aside_metrics(run_dir: Path) -> None:
    """A finished run trained longer is unfinished again: keep its old metrics.json under the
    number of epochs it describes, so it is neither lost nor read as the new run's result."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return
    epochs = read_metrics(run_dir)["epochs"]
    kept = run_dir / f"metrics-epoch{epochs}.json"
    number = 2
    while kept.exists():  # never over an earlier result
        kept = run_dir / f"metrics-epoch{epochs}-{number}.json"
        number += 1
    path.rename(kept)


def clear_unfinished_attempt(run_dir: Path) -> None:
    """Drop what an attempt wrote before its first checkpoint: nothing there can be continued,
    and TensorBoard should show the restarted run once, not over a stub of the old one.
    """
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    for events in run_dir.glob(TENSORBOARD_FILES):
        events.unlink()


def claim_new_directory(path: Path) -> Path:
    """Create `path`, or `path_2`, `path_3`, ... if taken; atomic, so no two callers get one.

    Run and sweep directories are named by the time to the second: two started in the same
    second would otherwise share one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        candidate = path if number == 1 else path.with_name(f"{path.name}_{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


# What a start of a run writes into its directory (Hydra's record and log, betavae's files):
# all that is removed when a new run fails to start, so that nothing else ever is.
_START_FILES = (HYDRA_DIR, CONFIG_FILE, CHECKPOINT_DIR, TENSORBOARD_FILES, "*.log")


def remove_failed_start(run_dir: Path, root: Path) -> None:
    """Remove what a new run wrote before it failed to start (a mistake found late, a stop
    during start-up), then the directory and its parents up to `root` if that emptied them.

    Only the files a start writes are removed: a directory given with `hydra.run.dir=` may
    hold files of the user's, which stay, and so does the directory then.
    """
    if not run_dir.is_dir():
        return
    for pattern in _START_FILES:
        for path in run_dir.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    directory, root = run_dir.resolve(), root.resolve()
    if any(directory.iterdir()):
        return
    directory.rmdir()
    parent = directory.parent
    while (parent == root or root in parent.parents) and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
