"""What the apps that use a trained model share: their entry point, opening the run from the
config, and naming their result files after the data they were computed on."""

from collections.abc import Callable

import hydra
import torch
from omegaconf import DictConfig

from betavae.apps.cli import exit_on_user_error, run_app
from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas, validate
from betavae.config.usage import register_usage_schemas
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
