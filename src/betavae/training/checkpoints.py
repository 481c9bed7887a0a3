"""Reading betavae checkpoints safely, and refusing ones that do not fit a model."""

from pathlib import Path
from typing import Any

import torch

from betavae.errors import UserError
from betavae.training.module import ARCHITECTURE_KEYS, VAEModule
from betavae.training.run_dir import BEST_CHECKPOINT, LAST_CHECKPOINT, require_checkpoint_file


def _load(path: Path, key: str) -> dict[str, Any]:
    """A betavae checkpoint, loaded with `weights_only=True`: the torch >= 2.6 default, and
    safe for files from others; `key` names the setting that gave the path."""
    require_checkpoint_file(path, key)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{key}={path}: not a readable checkpoint ({reason})") from error
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or not set(ARCHITECTURE_KEYS) <= set(hparams):
        raise UserError(f"{key}={path}: not a betavae checkpoint (no VAE hyper-parameters in it)")
    return checkpoint


def checkpoint_hparams(path: Path, key: str) -> dict[str, Any]:
    """The hyper-parameters saved in a checkpoint."""
    return _load(path, key)["hyper_parameters"]


def finished_epochs(checkpoint: dict[str, Any]) -> int:
    """How many epochs were complete when the checkpoint was written."""
    return checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"]


def check_checkpoint_fits(
    path: Path, module: VAEModule, key: str, max_epochs: int | None = None
) -> None:
    """Fail before training if the checkpoint's weights cannot load into `module`, or (with
    `max_epochs`, for a new run from it) if it has no epoch left to train."""
    checkpoint = _load(path, key)
    saved, wanted = checkpoint["hyper_parameters"], module.architecture()
    differences = [
        f"{name}={saved[name]} (this config: {wanted[name]})"
        for name in ARCHITECTURE_KEYS
        if saved[name] != wanted[name]
    ]
    if differences:
        raise UserError(
            f"{key}={path}: the checkpoint's model differs: {'; '.join(differences)}; "
            "use the model and data settings of the run that wrote it"
        )
    done = finished_epochs(checkpoint)
    if max_epochs is not None and done >= max_epochs:
        raise UserError(
            f"trainer.max_epochs={max_epochs}: {key}={path} has {done} epochs trained already, "
            f"and a run started from it counts on from there; set trainer.max_epochs={done + 1} "
            "or more"
        )


def _saved_step(path: Path) -> int | None:
    """The global step a checkpoint file was written at, or None if it cannot be read."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return checkpoint.get("global_step") if isinstance(checkpoint, dict) else None


def newest_readable_checkpoint(run_dir: Path) -> tuple[Path | None, str | None]:
    """Where to continue a run from: the readable checkpoint of the run with the most steps,
    last.ckpt on a tie. That is last.ckpt unless it cannot be read (a full disk, a copy cut
    short).

    Returns (checkpoint or None if there is none, a line saying why another checkpoint than
    last.ckpt was chosen, or None). Nothing is deleted: an unreadable file stays to inspect.
    """
    last = run_dir / LAST_CHECKPOINT
    candidates = [last, run_dir / BEST_CHECKPOINT]
    readable = [(step, path) for path in candidates if (step := _saved_step(path)) is not None]
    if not readable:
        if last.is_file():
            raise UserError(
                f"resume={run_dir}: {LAST_CHECKPOINT} cannot be read and the run has no other "
                "readable checkpoint; start the run again without resume"
            )
        return None, None
    # max() keeps the first of equals, and last.ckpt comes first.
    step, chosen = max(readable, key=lambda found: found[0])
    if chosen == last:
        return last, None
    if any(path == last for _, path in readable):
        why = "is older"
    else:
        why = "cannot be read" if last.is_file() else "is missing"
    return chosen, (
        f"{last} {why}; continuing from {chosen} (step {step}), the newest readable "
        "checkpoint of the run"
    )
