"""Locate the Hydra config directory for both an editable checkout and an installed wheel."""

from pathlib import Path


def config_dir() -> Path:
    """The `conf/` directory: shipped inside the wheel, or at the top of a source checkout.

    The wheel carries a copy at `betavae/conf`; an editable install runs from `src/`, so the
    repository's own `conf/` is two levels above the package and edits there take effect.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"betavae's conf/ directory is missing next to {package}; reinstall betavae"
    )
