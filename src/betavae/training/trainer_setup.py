"""The Lightning Trainer from a run's `trainer` config, with its mistakes reported in one line.

The config schema checks each value on its own; what depends on the machine (is there a GPU,
how many) is checked here, before any data is built, and whatever Lightning still refuses is
reported as one line naming `trainer`, not as a traceback.
"""

import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from betavae.errors import UserError


def check_devices(trainer: DictConfig) -> None:
    """Refuse devices this machine does not have, naming what it has."""
    accelerator, devices = trainer.accelerator, trainer.devices
    gpus = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda") and gpus == 0:
        raise UserError(
            f"trainer.accelerator={accelerator}: this machine has no GPU that torch can use; "
            "use trainer.accelerator=cpu (or auto, which picks a GPU when there is one)"
        )
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    if not on_gpu and devices not in ("auto",) and not (isinstance(devices, int) and devices >= 1):
        raise UserError(
            f"trainer.devices={_shown(devices)}: on the CPU (no GPU here) devices is a number "
            "of processes >= 1, or auto"
        )
    cores = len(os.sched_getaffinity(0))
    if not on_gpu and isinstance(devices, int) and devices > cores:
        raise UserError(
            f"trainer.devices={devices}: on the CPU each device is a training process, and this "
            f"machine has {cores} CPU core(s) and no GPU; use trainer.devices={cores} or fewer"
        )
    indices = list(devices) if OmegaConf.is_list(devices) else None
    if on_gpu and isinstance(devices, int) and devices > gpus:
        raise UserError(f"trainer.devices={devices}: this machine has {gpus} GPU(s)")
    if on_gpu and indices is not None and max(indices) >= gpus:
        raise UserError(
            f"trainer.devices={_shown(devices)}: this machine's GPUs are 0 to {gpus - 1}"
        )


def _shown(value: Any) -> str:
    return str(OmegaConf.to_container(value)) if OmegaConf.is_list(value) else str(value)


def build_trainer(trainer: DictConfig, **objects: Any) -> pl.Trainer:
    """`pl.Trainer(**trainer config, **objects)`; Lightning's refusals become one line."""
    try:
        return pl.Trainer(**OmegaConf.to_container(trainer, resolve=True), **objects)
    except (MisconfigurationException, ValueError, TypeError) as error:
        reason = " ".join(str(error).split())
        raise UserError(f"trainer: {reason}") from error
