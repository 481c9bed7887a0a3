"""Reading betavae checkpoints safely, and refusing ones that do not fit a model."""

from pathlib import Path
from typing import Any

import torch

from betavae.errors import UserError
from betavae.training.module import ARCHITECTURE_KEYS, VAEModule


def checkpoint_hparams(path: Path, key: str) -> dict[str, Any]:
    """The hyper-parameters saved in a checkpoint; `key` names the setting that gave the path.

    Loaded with `weights_only=True`: the torch >= 2.6 default, and safe for files from others.
    """
    if not path.is_file():
        raise UserError(f"{key}={path}: no such file; pass a .ckpt written by betavae-train")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{key}={path}: not a readable checkpoint ({reason})") from error
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or not set(ARCHITECTURE_KEYS) <= set(hparams):
        raise UserError(f"{key}={path}: not a betavae checkpoint (no VAE hyper-parameters in it)")
    return hparams


def check_checkpoint_fits(path: Path, module: VAEModule, key: str) -> None:
    """Fail before training if the checkpoint's weights cannot load into `module`."""
    saved = checkpoint_hparams(path, key)
    wanted = module.architecture()
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
