"""Running a Hydra app so that user mistakes end in one line and a non-zero exit, not a trace."""

import os
import sys
from collections.abc import Callable

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from betavae.errors import UserError

USAGE_ERROR = 2


def describe_user_error(error: BaseException) -> str | None:
    """One line for a mistake in the command line or config; None for a genuine bug."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, MissingConfigException) and error.options is not None:
        missing = error.missing_cfg_file or ""
        group, _, choice = missing.rpartition("/")
        options = ", ".join(sorted(o for o in error.options if not o.startswith("_")))
        return f"{group}={choice}: no such option; choose one of: {options}"
    for cause in _chain(error):
        if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
            what = str(cause.msg if hasattr(cause, "msg") else cause).splitlines()[0]
            return f"{cause.full_key}: {what}"
    if isinstance(error, HydraException):
        return " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return None


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def run_app(app: Callable[[], object], name: str, extra_overrides: Callable[[], list[str]]) -> None:
    """Call a `@hydra.main` function; print user errors as `<name>: error: <line>` and exit 2.

    `extra_overrides` computes overrides the app derives from the command line itself.

    HYDRA_FULL_ERROR makes Hydra raise instead of printing its own multi-line report, so the
    error reaches this function; unexpected exceptions still show their full traceback.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        sys.argv += extra_overrides()
        app()
    except Exception as error:
        line = describe_user_error(error)
        if line is None:
            raise
        print(f"{name}: error: {line}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
