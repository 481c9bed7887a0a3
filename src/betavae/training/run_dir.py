"""A run directory's layout, and continuing a run inside it (`resume=<run dir>`, `resume=auto`)."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from betavae.config.flat import flatten
from betavae.errors import UserError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
# TensorBoard's files, in the run directory itself (betavae.training.tensorboard).
TENSORBOARD_FILES = "events.out.tfevents.*"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/last.ckpt"

# `resume=auto`: continue whatever this job's directory holds (used to rerun a sweep).
AUTO_RESUME = "auto"

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


def resume_overrides(argv: list[str]) -> list[str]:
    """Hydra overrides that put a `resume=<run dir>` run into that directory, untouched.

    They must be known before Hydra creates the run directory, so they are read from the
    command line. `hydra.output_subdir=null` keeps the run's original `.hydra/` record.
    """
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith("resume=")]
    if not values or values[-1] in ("", "null", AUTO_RESUME):
        return []
    run_dir = require_run_dir(Path(values[-1]), "resume")
    quoted = str(run_dir).replace("\\", "\\\\").replace("'", "\\'")
    return [f"hydra.run.dir='{quoted}'", "hydra.output_subdir=null"]


def resumed_config(cfg: DictConfig, task_overrides: list[str]) -> tuple[DictConfig, Path]:
    """The saved config of the run being resumed (max_epochs maybe raised) and its last.ckpt."""
    run_dir = Path(cfg.resume)
    saved = OmegaConf.load(require_run_dir(run_dir, "resume") / CONFIG_FILE)
    for override in task_overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in _RESUME_MAY_CHANGE:
            raise UserError(
                f"{override}: a resumed run keeps its config, only trainer.max_epochs may be "
                f"raised; to change it, start a new run with ckpt_path={run_dir / LAST_CHECKPOINT}"
            )
    if any(o.startswith("trainer.max_epochs=") for o in task_overrides):
        if cfg.trainer.max_epochs < saved.trainer.max_epochs:
            raise UserError(
                f"trainer.max_epochs={cfg.trainer.max_epochs} is below the resumed run's "
                f"{saved.trainer.max_epochs}; a resumed run may only raise it"
            )
        saved.trainer.max_epochs = cfg.trainer.max_epochs
    checkpoint = run_dir / LAST_CHECKPOINT
    if not checkpoint.is_file():
        raise UserError(
            f"resume={run_dir}: {LAST_CHECKPOINT} is missing, the run stopped before its first "
            "checkpoint; start it again without resume"
        )
    return saved, checkpoint


@contextmanager
def removed_if_start_fails(run_dir: Path, root: Path, may_remove: bool = True) -> Iterator[None]:
    """On a user error inside, delete the run directory if this start created it.

    A directory that already holds a config.yaml belongs to an earlier start (a resumed run,
    a sweep job) and is left as it is. `may_remove` is false on DDP ranks other than zero.
    """
    fresh = not (run_dir / CONFIG_FILE).is_file()
    try:
        yield
    except UserError:
        if fresh and may_remove:
            remove_fresh_run_dir(run_dir, root)
        raise


def remove_fresh_run_dir(run_dir: Path, root: Path) -> None:
    """Delete a run directory that a failed start created, and its emptied parents up to root."""
    shutil.rmtree(run_dir, ignore_errors=True)
    root = root.resolve()
    parent = run_dir.resolve().parent
    while parent != root and root in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def is_finished(run_dir: Path) -> bool:
    """A run is finished once it wrote its metrics.json, the last thing a run does."""
    return (run_dir / METRICS_FILE).is_file()


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
