"""Whether a checkpoint holds a betavae model, and one that fits the model a config builds."""

from pathlib import Path
from typing import Any

from betavae.errors import UserError
from betavae.lifecycle.checkpoints import read_checkpoint
from betavae.training.module_base import ARCHITECTURE_KEYS, ModuleBase


def checkpoint_hparams(path: Path, key: str) -> dict[str, Any]:
    """The VAE hyper-parameters saved in a checkpoint; one line if it is not betavae's."""
    hparams = read_checkpoint(path, key).get("hyper_parameters")
    if not isinstance(hparams, dict) or not set(ARCHITECTURE_KEYS) <= set(hparams):
        raise UserError(f"{key}={path}: not a betavae checkpoint (no VAE hyper-parameters in it)")
    return hparams


def check_checkpoint_fits(path: Path, module: ModuleBase, key: str) -> None:
    """Fail before training if the checkpoint's weights cannot load into `module`: another
    network, another kind of model (M2 or a VAE), or weights of an objective's own (FactorVAE's
    discriminator) on one side only."""
    checkpoint = read_checkpoint(path, key)
    saved, wanted = checkpoint_hparams(path, key), module.architecture()
    objective = module.hparams.objective
    saved_objective = saved.get("objective", "beta")
    if (saved_objective == "m2") != (objective == "m2"):
        raise UserError(
            f"{key}={path}: the checkpoint holds a model of objective={saved_objective}, which "
            f"cannot start a run of objective={objective}; use a checkpoint of the same kind"
        )
    differences = [
        f"{name}={saved[name]} (this config: {wanted[name]})"
        for name in wanted
        if saved[name] != wanted[name]
    ]
    parts = {name.split(".")[0] for name in checkpoint["state_dict"]}
    own = {name.split(".")[0] for name in module.state_dict()}
    if parts != own:
        differences.append(
            f"objective={saved_objective} with weights of "
            f"{', '.join(sorted(parts ^ own))} (this config: {objective})"
        )
    if differences:
        raise UserError(
            f"{key}={path}: the checkpoint's model differs: {'; '.join(differences)}; "
            "use the model and data settings of the run that wrote it"
        )
