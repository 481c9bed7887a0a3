"""`-m ... resume=auto`: refuse a rerun that is not the sweep's command, before Hydra writes.

Hydra rewrites the sweep's multirun.yaml, and each job's `.hydra/` record, as soon as a sweep
starts. Each job checks its whole config against the one it started with (`run_dir.
require_same_config`), but by then those files have changed. So the command line is checked
first: every job directory already in the sweep must have been started with the overrides this
command gives the job of its number. Sweeps that choose their jobs as they go
(`hparams_search=`) are left to the per-job check.
"""

from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from betavae.apps.cli import command_line_value, is_override
from betavae.errors import UserError

_HYDRA_OVERRIDES = ".hydra/overrides.yaml"
_IGNORED = ("resume",)


def _as_dict(overrides: list[str]) -> dict[str, str]:
    pairs = (o.split("=", 1) for o in overrides)
    return {key.lstrip("+~"): value for key, value in pairs if key.lstrip("+~") not in _IGNORED}


def _job_overrides(argv: list[str]) -> list[list[str]]:
    """Each job's task overrides, in job-number order, as Hydra's basic sweeper makes them."""
    parsed = OverridesParser.create().parse_overrides([a for a in argv if is_override(a)])
    task = [o for o in parsed if not o.key_or_group.startswith("hydra")]
    return [job for batch in BasicSweeper.split_arguments(task, None) for job in batch]


def check_sweep_can_resume(argv: list[str]) -> None:
    sweep_dir = command_line_value(argv, "hydra.sweep.dir")
    if sweep_dir is None or command_line_value(argv, "hparams_search") is not None:
        return
    jobs = _job_overrides(argv)
    for record in sorted(Path(sweep_dir).glob(f"*/{_HYDRA_OVERRIDES}")):
        job_dir = record.parent.parent
        number = job_dir.name.split("_", 1)[0]
        if not number.isdigit() or int(number) >= len(jobs):
            continue
        saved = _as_dict(list(OmegaConf.load(record)))
        now = _as_dict(jobs[int(number)])
        changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
        if changed:
            key = changed[0]
            raise UserError(
                f"resume=auto: {job_dir} was started with another config ({key}="
                f"{saved.get(key, '<unset>')}, now {now.get(key, '<unset>')}); rerun the sweep's "
                "original command, or start a new sweep without resume=auto"
            )
