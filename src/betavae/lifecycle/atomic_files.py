"""Files that are whole or absent: written beside their final name, synced, then renamed.

A rename within one directory is atomic, so a reader (or a run continued after a crash) sees
the previous version of a file or the new one, never a part of the new one.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# Staging files are named `.<final name>.tmp-<pid>`: hidden, and never taken for the file.
STAGING_MARK = ".tmp-"


def staging_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{STAGING_MARK}{os.getpid()}")


def remove_staging_files(directory: Path, name: str) -> None:
    """Drop the staging files of the files named `name` (a glob) in `directory` that killed
    processes left: they never replaced a file. Only for a caller that knows no other process
    is writing one now."""
    for stale in directory.glob(f".{name}{STAGING_MARK}*"):
        stale.unlink(missing_ok=True)


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable, so a crash cannot bring the old name back."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(
    path: Path, write: Callable[[BinaryIO], object], durable: bool = True
) -> None:
    """Call `write(file)` on a staging file beside `path`, then rename it to `path`.

    `durable`: synced to disk before the rename and the rename after it, so that a power failure
    too leaves the old version or the new one. Without, a killed process still does (the
    rename is atomic), for a write that a newer one replaces within moments.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(path)
    try:
        with staging.open("wb") as file:
            write(file)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)


def write_text_atomically(path: Path, text: str) -> None:
    replace_atomically(path, lambda file: file.write(text.encode()))
