"""`betavae-train`: compose the config, build data, model and trainer, fit, test, report."""

import logging
import sys
import warnings
from pathlib import Path

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from betavae.apps.cli import exit_on_user_error, run_app
from betavae.config.paths import config_dir
from betavae.config.schema import register_schemas, validate
from betavae.errors import UserError
from betavae.training.callbacks import build_callbacks
from betavae.training.checkpoints import check_checkpoint_fits
from betavae.training.module import VAEModule
from betavae.training.results import (
    final_metrics,
    log_hparams,
    stage_metrics,
    summary,
    write_metrics,
)
from betavae.training.run_dir import (
    CONFIG_FILE,
    remove_fresh_run_dir,
    resume_overrides,
    resumed_config,
)

register_schemas()
APP_NAME = "betavae-train"


def train(cfg: DictConfig, run_dir: Path, task_overrides: list[str]) -> float:
    """Train and test one model in `run_dir`; return the best `val/elbo` for sweepers."""
    fresh = cfg.resume is None
    try:
        datamodule, module, checkpoint, cfg = _prepare(cfg, run_dir, task_overrides)
    except UserError:
        if fresh:
            remove_fresh_run_dir(run_dir, Path(cfg.paths.output_dir))
        raise
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=instantiate(cfg.logger, save_dir=str(run_dir)),
        callbacks=build_callbacks(cfg.callbacks, run_dir, cfg.trainer.enable_progress_bar),
        default_root_dir=run_dir,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
    val = stage_metrics(trainer.callback_metrics, "val")
    best = trainer.checkpoint_callback.best_model_path
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    test = stage_metrics(trainer.callback_metrics, "test")
    metrics = final_metrics(trainer, val, test, run_dir)
    log_hparams(trainer, cfg, metrics)
    if trainer.is_global_zero:
        write_metrics(run_dir, metrics)
        print(summary(run_dir, metrics))
    return metrics["best_val_elbo"]


def _prepare(
    cfg: DictConfig, run_dir: Path, task_overrides: list[str]
) -> tuple[pl.LightningDataModule, VAEModule, Path | None, DictConfig]:
    """Everything that can fail because of the user, done before anything is trained."""
    validate(cfg)
    resuming = cfg.resume is not None
    if resuming:
        cfg, checkpoint = resumed_config(cfg, task_overrides)
    else:
        checkpoint = None if cfg.ckpt_path is None else Path(cfg.ckpt_path)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    module = VAEModule(image_shape=datamodule.image_shape, **OmegaConf.to_container(cfg.model))
    if checkpoint is not None:
        check_checkpoint_fits(checkpoint, module, "resume" if resuming else "ckpt_path")
    # Missing data fails here, before the run has files, not in the middle of `fit`.
    datamodule.prepare_data()
    datamodule.setup("fit")
    OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)
    return datamodule, module, checkpoint, cfg


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    with exit_on_user_error(APP_NAME):
        return train(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))


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
    run_app(_hydra_main, APP_NAME, lambda: resume_overrides(sys.argv[1:]))
