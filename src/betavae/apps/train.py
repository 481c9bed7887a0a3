"""`betavae-train`: compose and check the config, then run betavae.training.pipeline."""

import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from betavae.apps.cli import exit_on_user_error, run_app
from betavae.apps.multirun_job import (
    ddp_ranks_run_this_job,
    give_parallel_job_its_device,
    job_name_overrides,
    register_resolvers,
)
from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas, validate
from betavae.training.run_dir import removed_if_start_fails, resume_overrides

register_schemas()
register_resolvers()
APP_NAME = "betavae-train"


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir, task_overrides = Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    with exit_on_user_error(APP_NAME):
        with removed_if_start_fails(run_dir, Path(cfg.paths.output_dir)):
            validate(cfg)
        from betavae.training.pipeline import train  # torch and Lightning: seconds to import

        with ddp_ranks_run_this_job(run_dir, task_overrides):
            give_parallel_job_its_device(cfg, hydra_cfg)
            return train(cfg, run_dir, task_overrides)


def _quiet_lightning() -> None:
    """Drop console lines a user cannot act on, so the ones that matter stand out."""
    # In-memory data sets are fastest without worker processes: the advice does not apply.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # Lightning's own use of a torch API deprecated in torch 2.14.
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
    # An advertisement for a hosted logging service, printed at every start.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )


def main() -> None:
    _quiet_lightning()
    run_app(
        _hydra_main,
        APP_NAME,
        lambda: [*resume_overrides(sys.argv[1:]), *job_name_overrides(sys.argv[1:])],
    )
