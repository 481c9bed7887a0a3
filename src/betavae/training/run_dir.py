"""A run directory's layout and its life: started, continued (`resume=`), finished or diverged.

Imports nothing heavy: the train app uses it before torch is imported.
"""

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from betavae.atomic_files import write_text_atomically
from betavae.commands import hydra_quoted, override
from betavae.config.flat import flatten
from betavae.errors import UserError
from betavae.training.signals import RunStopped
from betavae.user_paths import shown_path, user_path

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
# TensorBoard's files, in the run directory itself (betavae.training.tensorboard).
TENSORBOARD_FILES = "events.out.tfevents.*"
BEST_NAME = "best.ckpt"
LAST_NAME = "last.ckpt"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/{LAST_NAME}"
BEST_CHECKPOINT = f"{CHECKPOINT_DIR}/{BEST_NAME}"

# `resume=auto`: continue whatever this job's directory holds (used to rerun a sweep).
AUTO_RESUME = "auto"

# metrics.json's "status": written last, its presence means "do not run this again".
FINISHED = "finished"
DIVERGED = "diverged"

# The only settings a resumed run may change: anything else would make the continued run a
# different experiment under the same name.
_RESUME_MAY_CHANGE = ("resume", "trainer.max_epochs")


def require_run_dir(path: Path, key: str) -> Path:
    if not (path / CONFIG_FILE).is_file():
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
        if path.parent.name != CHECKPOINT_DIR or not (run_dir / CONFIG_FILE).is_file():
            raise UserError(
                f"{key}={path}: not inside a run's {CHECKPOINT_DIR}/ folder, so the run's "
                f"{CONFIG_FILE} is unknown; pass the run directory or a checkpoint inside it"
            )
        return run_dir, path
    raise UserError(
        f"{key}={path}: no such file or directory; pass a run directory made by "
        "betavae-train (outputs/<date>/<time>) or a .ckpt file inside its checkpoints/"
    )


def require_checkpoint_file(path: Path, key: str) -> None:
    """The cheap first check of a checkpoint path, made before torch is imported."""
    if not path.is_file():
        raise UserError(f"{key}={path}: no such file; pass a .ckpt written by betavae-train")


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


def resume_overrides(resume: str | None) -> list[str]:
    """Hydra overrides that put a `resume=<run dir>` run into that directory, untouched.

    They must be known before Hydra creates the run directory, so the value comes from the
    command line. `hydra.output_subdir=null` keeps the run's original `.hydra/` record.
    """
    if resume in (None, "", "null", AUTO_RESUME):
        return []
    run_dir = require_run_dir(user_path(resume), "resume")
    return [f"hydra.run.dir={hydra_quoted(run_dir)}", "hydra.output_subdir=null"]


def check_resume(run_dir: Path, given: dict[str, str]) -> tuple[str, int] | None:
    """Check a `resume=<run dir>` command line before anything is written: `given` are its
    other settings (key: value as typed). Returns (what to tell the user, exit status) when
    there is nothing to do, else None.

    A finished run is continued only to train it longer (a higher `trainer.max_epochs`);
    otherwise nothing changes and the command succeeds. A diverged run is final.
    """
    require_run_dir(run_dir, "resume")
    config = OmegaConf.load(run_dir / CONFIG_FILE)
    saved, status = config.trainer.max_epochs, run_status(run_dir)
    for key, value in given.items():
        if key not in _RESUME_MAY_CHANGE:
            # A new run counts on from the checkpoint's epochs: give a finished one more.
            epochs = saved if status is None else 2 * saved
            raise UserError(
                f"{key}={value}: a resumed run keeps its config, only trainer.max_epochs may be "
                "raised; to change it, start a new run from its checkpoint: betavae-train "
                f"{override('ckpt_path', shown_path(run_dir / LAST_CHECKPOINT))} {key}={value} "
                f"trainer.max_epochs={epochs}"
            )
    raised = given.get("trainer.max_epochs")
    if raised is not None and raised.isdigit() and int(raised) < saved:
        raise UserError(
            f"trainer.max_epochs={raised} is below the resumed run's {saved}; a resumed run "
            "may only raise it"
        )
    if status == DIVERGED:
        metrics = read_metrics(run_dir)
        best = metrics["best_checkpoint"]
        start = f"{override('ckpt_path', shown_path(best))} " if best else ""
        lower = config.model.lr / 10
        return (
            f"resume={shown_path(run_dir)}: the run diverged at step "
            f"{metrics['diverged_at_step']} and is final; start a new run with a lower learning "
            "rate, e.g. betavae-train "
            f"{start}model.lr={lower:g}",
            2,
        )
    if status == FINISHED and (raised is None or not raised.isdigit() or int(raised) == saved):
        return (
            f"{shown_path(run_dir)} is finished (trainer.max_epochs={saved}); nothing to do. To "
            f"train it longer: betavae-train {override('resume', shown_path(run_dir))} "
            f"trainer.max_epochs={2 * saved}",
            0,
        )
    return None


def resumed_config(cfg: DictConfig, task_overrides: list[str]) -> DictConfig:
    """The saved config of the run being resumed, with trainer.max_epochs raised if given
    (`check_resume` has checked the command line)."""
    saved = OmegaConf.load(require_run_dir(user_path(cfg.resume), "resume") / CONFIG_FILE)
    if any(o.startswith("trainer.max_epochs=") for o in task_overrides):
        saved.trainer.max_epochs = cfg.trainer.max_epochs
    return saved


def set_aside_final_metrics(run_dir: Path) -> None:
    """A finished run trained longer is unfinished again: keep its old metrics.json under the
    number of epochs it describes, so it is neither lost nor read as the new run's result."""
    path = run_dir / METRICS_FILE
    if path.is_file():
        epochs = read_metrics(run_dir)["epochs"]
        path.rename(run_dir / f"metrics-epoch{epochs}.json")


@contextmanager
def removed_if_start_fails(run_dir: Path, root: Path, may_remove: bool = True) -> Iterator[None]:
    """On a user error or a stop inside, delete the run directory if this start created it.

    A directory that already holds a config.yaml belongs to an earlier start (a resumed run,
    a sweep job) and is left as it is. `may_remove` is false on DDP ranks other than zero.
    """
    fresh = not (run_dir / CONFIG_FILE).is_file()
    try:
        yield
    except (UserError, RunStopped):
        if fresh and may_remove:
            remove_fresh_run_dir(run_dir, root)
        raise


def remove_fresh_run_dir(run_dir: Path, root: Path) -> None:
    """Delete a run directory that a failed start created, and its emptied parents up to root."""
    shutil.rmtree(run_dir, ignore_errors=True)
    root = root.resolve()
    parent = run_dir.resolve().parent
    while (parent == root or root in parent.parents) and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def require_new_run_dir(run_dir: Path) -> None:
    """A new run never takes over the directory of another (e.g. `hydra.run.dir=` or
    `hydra.sweep.dir=` naming one that holds a run already)."""
    if (run_dir / CONFIG_FILE).is_file():
        raise UserError(
            f"{shown_path(run_dir)} holds a run already; continue it with "
            f"{override('resume', shown_path(run_dir))} (a sweep: resume=auto), or give the new "
            "run a directory of its own"
        )


def require_same_config(cfg: DictConfig, run_dir: Path) -> None:
    """`resume=auto` finds a run's directory from the command alone (a sweep job is named by
    its swept values), so the config composed now must be the one the run started with;
    otherwise another experiment would be continued, or skipped, under this name.
    """
    saved = flatten(OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE)))
    now = flatten(OmegaConf.to_container(cfg, resolve=True))
    changed = sorted(
        k for k in saved.keys() | now.keys() if k != "resume" and saved.get(k) != now.get(k)
    )
    if changed:
        first = changed[0]
        raise UserError(
            f"resume=auto: {run_dir} was started with another config ({first}="
            f"{saved.get(first)!r}, now {now.get(first)!r}); rerun the sweep's original command, "
            "or start a new sweep without resume=auto"
        )


def clear_unfinished_attempt(run_dir: Path) -> None:
    """Drop what an attempt wrote before its first checkpoint: nothing there can be continued,
    and TensorBoard should show the restarted run once, not over a stub of the old one.
    """
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    for events in run_dir.glob(TENSORBOARD_FILES):
        events.unlink()
