"""Running a Hydra app so that user mistakes end in one line and a non-zero exit, not a trace."""

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from betavae.config.schema import unknown_key_message
from betavae.errors import UserError

# Exit statuses: 2 a mistake on the command line (nothing ran), 3 a run diverged.
USAGE_ERROR = 2
DIVERGED_EXIT = 3


def describe_user_error(error: BaseException) -> str | None:
    """One line for a mistake in the command line or config; None for a genuine bug."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, MissingConfigException) and error.options is not None:
        missing = error.missing_cfg_file or ""
        group, _, choice = missing.rpartition("/")
        options = ", ".join(sorted(o for o in error.options if not o.startswith("_")))
        return f"{group}={choice}: no such option; choose one of: {options}"
    chain = _chain(error)
    composing = any(isinstance(cause, ConfigCompositionException) for cause in chain)
    for cause in chain:
        if composing and isinstance(cause, ConfigAttributeError | ConfigKeyError):
            schema = cause.object_type
            if dataclasses.is_dataclass(schema) and cause.full_key.endswith(str(cause.key)):
                # An override of a key the schema does not have (a typo, or a key of another
                # command): say which keys there are, as for `+key=` (config.schema).
                prefix = cause.full_key.removesuffix(str(cause.key))
                return unknown_key_message(cause.full_key, schema, prefix)
        if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
            what = str(cause.msg if hasattr(cause, "msg") else cause).splitlines()[0]
            return f"{cause.full_key}: {what}"
    if isinstance(error, ValueError) and str(error).startswith("Only one of --run, --multirun"):
        return f"{error}; to see a sweep's config, show one job's: leave out -m and the commas"
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


@contextmanager
def exit_on_user_error(name: str) -> Iterator[None]:
    """Print a user mistake as `<name>: error: <line>` and exit 2; let genuine bugs raise."""
    try:
        yield
    except Exception as error:
        line = describe_user_error(error)
        if line is None:
            raise
        print(f"{name}: error: {line}", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def run_app(
    app: Callable[[], object],
    name: str,
    help_text: Callable[[], str],
    command_line: Callable[[list[str]], list[str]] = list,
) -> None:
    """Call a `@hydra.main` function with user errors reported as one line.

    `help_text` is what `--help` prints (see betavae.apps.help); `command_line` turns the
    arguments typed into the ones Hydra runs with (the train app plans the run there).
    HYDRA_FULL_ERROR makes Hydra raise composition errors instead of printing its own
    multi-line report. Errors inside the task should be caught there with
    `exit_on_user_error` too: Hydra would otherwise print a line of its own before them.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if {"--help", "-h"} & set(sys.argv[1:]):
        try:
            print(help_text(), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    with exit_on_user_error(name):
        require_readable_overrides(sys.argv[1:])
        sys.argv[1:] = command_line(sys.argv[1:])
        app()


def require_readable_overrides(argv: list[str]) -> None:
    """Hydra's grammar reads `=`, `,`, `~`, brackets and spaces in a value as syntax, so a path
    holding them (a sweep job's directory, `~/pictures`) must be quoted for Hydra as well as
    for bash: say so, with the quoting, rather than with Hydra's parser error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from betavae.lifecycle.commands import override

    parser = OverridesParser.create()
    for arg in argv:
        if not is_override(arg):
            continue
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as error:
            key, value = arg.split("=", 1)
            if "/" in value or value.startswith("~"):
                raise UserError(
                    f"{arg}: Hydra cannot read this path unquoted (it holds characters of "
                    f"Hydra's grammar); quote it for Hydra and bash: {override(key, value)}"
                ) from error
            raise


def is_override(arg: str) -> bool:
    return "=" in arg and not arg.startswith("-")


def is_multirun(argv: list[str]) -> bool:
    return "-m" in argv or "--multirun" in argv


def task_settings(argv: list[str]) -> dict[str, str]:
    """The config keys the command line sets (not Hydra's own), with their values as typed."""
    settings = {}
    for arg in argv:
        if is_override(arg):
            key, value = arg.split("=", 1)
            if not key.lstrip("+~").startswith("hydra"):
                settings[key.lstrip("+~")] = value
    return settings


def command_line_value(argv: list[str], key: str) -> str | None:
    """The value the command line gives `key` (the last one wins, as in Hydra), unquoted as
    Hydra reads it (`resume='a,b=c'` is `a,b=c`); None when it is not given.

    Apps need some values before Hydra composes the config, e.g. the directory `resume=`
    continues, which decides where Hydra's run directory is.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [arg for arg in argv if is_override(arg) and arg.split("=", 1)[0] == key]
    if not given:
        return None
    (override,) = OverridesParser.create().parse_overrides(given[-1:])
    value = override.value()
    return None if value is None else str(value)
