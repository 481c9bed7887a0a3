"""Checkpoint files that are whole or absent, never half-written.

Lightning's own writer stages a checkpoint in the system's temporary directory and moves it
into place; across filesystems (a cluster's /tmp and its shared disk) that move is a copy, so
a process killed during it leaves a truncated checkpoint, and the staging file behind. Here
each checkpoint is staged next to its final name and renamed over the old one
(`atomic_files`): the previous checkpoint stays readable until the new one is complete.
"""

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from betavae.atomic_files import (
    STAGING_MARK,
    fsync_directory,
    replace_atomically,
    staging_path,
)


def remove_stale_staging_files(directory: Path) -> None:
    """Drop staging files a killed process left; they never replaced a checkpoint."""
    for stale in directory.glob(f".*.ckpt{STAGING_MARK}*"):
        stale.unlink(missing_ok=True)


def link_atomically(source: Path, path: Path) -> None:
    """Make `path` the same file as `source` (a hard link) without a moment where it is absent.

    Used when two checkpoints hold the same state, so it is serialised once. Where the
    filesystem has no hard links, the bytes are copied instead.
    """
    staging = staging_path(path)
    staging.unlink(missing_ok=True)
    try:
        os.link(source, staging)
    except OSError:
        replace_atomically(path, lambda file: file.write(source.read_bytes()))
        return
    os.replace(staging, path)
    fsync_directory(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each file with `replace_atomically`."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        replace_atomically(Path(path), lambda file: torch.save(checkpoint, file))
