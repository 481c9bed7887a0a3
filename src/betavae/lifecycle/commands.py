"""The commands betavae prints for a person to paste: built from a run's own record, quoted so
that bash and Hydra read them back as printed.

A printed command repeats the run's experiment with only the change it names, whatever the
command line that is running now: "start a new run from this one's checkpoint with β = 4"
carries every setting of the run (its data, its model, its epochs) and β = 4. A run's record is
the overrides Hydra saved when it started (`.hydra/overrides.yaml`), and, for what changed
since (a run trained longer has a higher `trainer.max_epochs`), the difference between its
config.yaml and what those overrides compose today, as explicit `key=value`s.

Two quotings meet in an override: bash's, and Hydra's grammar, in which `=`, `,`, brackets,
spaces and quotes end an unquoted value. A sweep job's directory, `0_model.beta=1,model.
latent_dim=2`, has both, so `resume=<that>` is printed as `"resume='multirun/.../0_model.beta=1,
model.latent_dim=2'"`: bash passes one word, Hydra reads the path back unchanged.
"""

import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from betavae.config.flat import flatten
from betavae.lifecycle.layout import (
    AUTO_RESUME,
    HYDRA_OVERRIDES,
    SWEEP_RECORD,
    is_experiment_key,
    read_config,
)
from betavae.user_paths import shown_path

TRAIN = "betavae-train"
# Never repeated in a printed command: what betavae-train and Hydra add to a command line
# themselves (job names, a rank's quiet log, the directory claimed, `-m` as hydra.mode), and
# `resume`, which a printed command sets itself where it continues a run.
_NOT_REPEATED = (
    "hydra.job.config.override_dirname.exclude_keys",
    "hydra/job_logging",
    "hydra.mode",
    "hydra.run.dir",
    "hydra.sweep.dir",
    "hydra.output_subdir",
    "hydra.job.name",
    "resume",
)

# A config as flat `{"dotted.key": value}`, composed from overrides by the app (Hydra).
Compose = Callable[[list[str]], dict[str, Any]]


def shell_word(text: str) -> str:
    """`text` as one bash word: as it is when it needs no quoting, else quoted readably."""
    if re.fullmatch(r"[\w@%+=:,./-]+", text):
        return text
    if not re.search(r"[\"$`\\!]", text):
        return f'"{text}"'
    return shlex.quote(text)


def _hydra_reads_as_is(value: str) -> bool:
    try:
        (parsed,) = OverridesParser.create().parse_overrides([f"key={value}"])
    except HydraException:
        return False
    return parsed.value() == value


def hydra_quoted(value: str | Path) -> str:
    """`value` in Hydra's single quotes, which it reads back unchanged whatever it holds."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def override(key: str, value: str | Path) -> str:
    """`key=value` as one bash word that Hydra reads back as the string `value`."""
    return shell_word(_hydra_override(key, str(value)))


def _hydra_override(key: str, value: str) -> str:
    return f"{key}={value if _hydra_reads_as_is(value) else hydra_quoted(value)}"


def hydra_value(value: Any) -> str:
    """A config value as Hydra reads it back as the same value: `true`, `null`, `1e-05`,
    `[0,1]`, a string quoted where its characters would otherwise mean something."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(item) for item in value) + "]"
    if isinstance(value, float):  # the shortest that reads back: 4, 1e+11, 0.001
        return next(
            f"{value:.{digits}g}"
            for digits in range(1, 18)
            if float(f"{value:.{digits}g}") == value
        )
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return text if _hydra_reads_as_is(text) else hydra_quoted(text)


def override_key(text: str) -> str:
    """The key or group an override sets (`+model.x=1` and `model.x=2` both set `model.x`)."""
    return text.split("=", 1)[0].lstrip("~+")


def merged_overrides(base: Iterable[str], changes: Iterable[str]) -> list[str]:
    """`base` with `changes` applied: an override of a key or group that `changes` sets again
    is dropped from `base` (Hydra refuses two values for one group), then `changes` follow."""
    changes = list(changes)
    changed = {override_key(change) for change in changes}
    return [o for o in base if override_key(o) not in changed] + changes


def resume_command(run_dir: Path, max_epochs: int | None = None) -> str:
    """`betavae-train resume=<run>`: continue a run in place (train it longer with
    `max_epochs`)."""
    longer = [] if max_epochs is None else [f"trainer.max_epochs={max_epochs}"]
    return " ".join([TRAIN, override("resume", shown_path(run_dir)), *longer])


def recorded_overrides(run_dir: Path) -> list[str]:
    """The overrides of the command line that started the run (or last ran its sweep job), as
    Hydra saved them, less those betavae added itself."""
    record = run_dir / HYDRA_OVERRIDES
    saved = list(OmegaConf.load(record)) if record.is_file() else []
    return [o for o in saved if override_key(o) not in _NOT_REPEATED]


def reproducing_overrides(run_dir: Path, compose: Compose) -> list[str]:
    """Overrides that compose the run's own config: its recorded command line, and `key=value`
    for every key of its experiment where its config.yaml differs from what that command line
    composes now (where it ran, such as the devices a launcher chose, is left out)."""
    overrides = recorded_overrides(run_dir)
    saved = flatten(OmegaConf.to_container(read_config(run_dir)))
    now = compose(overrides)
    drift = [
        f"{key}={hydra_value(value)}"
        for key, value in saved.items()
        if is_experiment_key(key) and key in now and now[key] != value
    ]
    return merged_overrides(overrides, drift)


def new_run_command(run_dir: Path, changes: Mapping[str, Any], compose: Compose) -> str:
    """`betavae-train <the run's settings> <changes>`: a new run of the same experiment but for
    `changes` (`{"model.lr": 1e-4}`, `{"ckpt_path": <its last.ckpt>}`)."""
    settings = merged_overrides(
        reproducing_overrides(run_dir, compose),
        [_change(key, value) for key, value in changes.items()],
    )
    return " ".join([TRAIN, *(shell_word(o) for o in settings)])


def _change(key: str, value: Any) -> str:
    if isinstance(value, Path):
        return _hydra_override(key, shown_path(value))
    return f"{key}={hydra_value(value)}"


def sweep_command(sweep_dir: Path) -> str | None:
    """The command that ran the sweep, continuing it in `sweep_dir` (`resume=auto`); None when
    Hydra kept no record of it (a sweeper that chooses its jobs as it goes)."""
    record = sweep_dir / SWEEP_RECORD
    if not record.is_file():
        return None
    overrides = OmegaConf.load(record).hydra.overrides
    given = [*overrides.hydra, *overrides.task]
    kept = [shell_word(o) for o in given if override_key(o) not in _NOT_REPEATED]
    continuing = [override("hydra.sweep.dir", shown_path(sweep_dir)), f"resume={AUTO_RESUME}"]
    return " ".join([TRAIN, "-m", *kept, *continuing])
