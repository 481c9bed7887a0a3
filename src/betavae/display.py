"""How paths are shown to a person: as they would type them."""

from pathlib import Path


def shown_path(path: Path | str) -> str:
    """`path` relative to the current directory when inside it, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
