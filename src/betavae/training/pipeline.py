"""One training run, start to finish: data, model and Trainer; fit, test, report.

The train app imports this only once the config has been validated, so a mistake on the
command line is reported in a second rather than after importing torch and Lightning.
"""

import os
from pathlib import Path

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf

from betavae.training.callbacks import build_callbacks
from betavae.training.checkpoints import check_checkpoint_fits
from betavae.training.disentanglement import test_mig
from betavae.training.module import VAEModule
from betavae.training.results import (
    final_metrics,
    log_hparams,
    read_metrics,
    stage_metrics,
    summary,
    write_metrics,
)
from betavae.training.run_dir import (
    AUTO_RESUME,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    clear_unfinished_attempt,
    is_finished,
    removed_if_start_fails,
    require_same_config,
    resumed_config,
)


def train(cfg: DictConfig, run_dir: Path, task_overrides: list[str]) -> float:
    """Train and test one model in `run_dir`; return `cfg.optimized_metric` for sweepers.

    `cfg` has been validated by the caller (the train app, before importing this module).
    Every rank of a DDP run calls this; only rank zero writes files and prints.
    """
    if cfg.resume == AUTO_RESUME and _is_finished_job(cfg, run_dir):
        return read_metrics(run_dir)[cfg.optimized_metric]
    root, rank_zero = Path(cfg.paths.output_dir), rank_zero_only.rank == 0
    with removed_if_start_fails(run_dir, root, may_remove=rank_zero):
        datamodule, module, checkpoint, cfg = _prepare(cfg, run_dir, task_overrides)
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=instantiate(cfg.logger, save_dir=str(run_dir)),
        callbacks=build_callbacks(cfg.callbacks, run_dir, cfg.trainer.enable_progress_bar),
        default_root_dir=run_dir,
    )
    if isinstance(trainer.accelerator, CPUAccelerator):
        _stop_per_step_cuda_probes()
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
    if "val/elbo" not in trainer.callback_metrics:
        # Resumed from the checkpoint of the final epoch (the run stopped before writing its
        # metrics), so fit had no epoch left to run: measure the last weights now.
        trainer.validate(module, datamodule=datamodule, verbose=False)
    val = stage_metrics(trainer.callback_metrics, "val")
    best = trainer.checkpoint_callback.best_model_path
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    test = stage_metrics(trainer.callback_metrics, "test")
    metrics = final_metrics(trainer, val, test, run_dir)
    # The best checkpoint's weights, which `test` loaded into the module.
    metrics.update(test_mig(trainer, module.vae, datamodule))
    log_hparams(trainer, cfg, metrics)
    if trainer.is_global_zero:
        write_metrics(run_dir, metrics)
        print(summary(run_dir, metrics))
    return metrics[cfg.optimized_metric]


def _stop_per_step_cuda_probes() -> None:
    """Let a CPU run ask "is CUDA available?" the cheap way again.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, which makes every
    `torch.cuda.is_available()` load and query NVML from scratch, so that the check cannot
    stop a later fork from using CUDA. Adam asks it on every step: on a machine with a CUDA
    build of torch but no GPU that measured about 0.4 ms per step. A run on the CPU never uses
    CUDA itself, and by now Lightning has made its device checks.
    """
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)


def _is_finished_job(cfg: DictConfig, run_dir: Path) -> bool:
    """`resume=auto`: whether this job finished already, so that it is skipped, untouched."""
    if not (run_dir / CONFIG_FILE).is_file():
        return False
    require_same_config(cfg, run_dir)
    finished = is_finished(run_dir)
    if finished and rank_zero_only.rank == 0:
        print(f"Skipping {run_dir}: finished already ({METRICS_FILE} is there)")
    return finished


def _prepare(
    cfg: DictConfig, run_dir: Path, task_overrides: list[str]
) -> tuple[pl.LightningDataModule, VAEModule, Path | None, DictConfig]:
    """Everything that can fail because of the user, done before anything is trained."""
    checkpoint = None if cfg.ckpt_path is None else Path(cfg.ckpt_path)
    resuming = cfg.resume is not None
    if cfg.resume == AUTO_RESUME:
        resuming = (run_dir / LAST_CHECKPOINT).is_file()
        if resuming:
            checkpoint = run_dir / LAST_CHECKPOINT
        elif rank_zero_only.rank == 0:
            clear_unfinished_attempt(run_dir)
    elif resuming:
        cfg, checkpoint = resumed_config(cfg, task_overrides)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    module = VAEModule(image_shape=datamodule.image_shape, **OmegaConf.to_container(cfg.model))
    if checkpoint is not None:
        check_checkpoint_fits(checkpoint, module, "resume" if resuming else "ckpt_path")
    # Missing data fails here, before the run has files, not in the middle of `fit`.
    datamodule.prepare_data()
    datamodule.setup("fit")
    if rank_zero_only.rank == 0:
        OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)
    return datamodule, module, checkpoint, cfg
