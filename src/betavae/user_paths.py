"""Paths as a person types them and reads them."""

import os
from pathlib import Path


def user_path(value: str) -> Path:
    """A path from the command line or a config, with `~` and `$VARIABLES` expanded.

    The shell expands neither inside a Hydra override (`data.path='~/pictures'`), so the
    values are expanded here, the same way for every key that names a file or folder.
    """
    return Path(os.path.expandvars(value)).expanduser()


def shown_path(path: Path | str) -> str:
    """`path` relative to the current directory when inside it, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
