"""Commands the project prints, quoted so that they work when pasted into bash as printed.

Two quotings meet in an override: bash's, and Hydra's grammar, in which `=`, `,`, brackets,
spaces and quotes end an unquoted value. A sweep job's directory, `0_model.beta=1,model.
latent_dim=2`, has both, so `resume=<that>` is printed as `"resume='multirun/.../0_model.beta=1,
model.latent_dim=2'"`: bash passes one word, Hydra reads the path back unchanged.
"""

import re
import shlex
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException


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
    value = str(value)
    if not _hydra_reads_as_is(value):
        value = hydra_quoted(value)
    return shell_word(f"{key}={value}")
