"""What the apps that use a trained model share: their entry point, opening the run from the
config, and naming their result files after the data they were computed on."""

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from betavae.apps.cli import exit_on_user_error, run_app
from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas, validate
from betavae.config.usage import register_usage_schemas
from betavae.display import shown_path
from betavae.errors import UserError
from betavae.loading import LoadedRun, load_run

register_schemas()
register_usage_schemas()


def open_run(cfg: DictConfig) -> LoadedRun:
    """Check the config, seed, and load the model; fails before any file is written."""
    validate(cfg)
    torch.manual_seed(cfg.seed)
    return load_run(cfg.run)


def results_stem(cfg: DictConfig) -> str:
    """`<split>` on the run's own data, `<data set>-<split>` on another (`data=...`), so results
    on different data sets sit side by side instead of overwriting each other."""
    if "_target_" not in cfg.data:
        return cfg.split
    data_name = cfg.data._target_.rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    return f"{data_name}-{cfg.split}"


def variant(cfg: DictConfig, keys: Iterable[str]) -> str:
    """`-key=value` for each of `keys` (options that change a result) not at its default, so
    that results of different options get different names: `test-knn-neighbours=10.csv`."""
    defaults = {f.name: f.default for f in dataclasses.fields(OmegaConf.get_type(cfg))}
    return "".join(f"-{key}={_shown(cfg[key])}" for key in keys if cfg[key] != defaults[key])


def _shown(value: object) -> str:
    if OmegaConf.is_list(value) or isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def require_new_results(cfg: DictConfig, paths: Iterable[Path]) -> None:
    """A result file is never replaced by another computation under its name without asking:
    the same name means the same options, but the run's checkpoint may have changed since."""
    taken = [path for path in paths if path.exists()]
    if taken and not cfg.overwrite:
        raise UserError(
            f"{shown_path(taken[0])} exists already (this command, run before); pass "
            "overwrite=true to replace it, or change an option to write another variant"
        )


def usage_main(config_name: str, app_name: str, task: Callable[[DictConfig], object]) -> Callable:
    """The console-script `main` of an app: `task` on the composed `conf/<config_name>.yaml`,
    with every user mistake, at composition or inside the task, reported as one line."""

    @hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    def _hydra_main(cfg: DictConfig) -> None:
        with exit_on_user_error(app_name):
            task(cfg)

    def main() -> None:
        run_app(_hydra_main, app_name, lambda: [])

    return main
