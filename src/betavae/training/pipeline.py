"""One training run, start to finish: data, model and Trainer; fit, test, report.

The train app imports this only once the config has been validated, so a mistake on the
command line is reported in a second rather than after importing torch and Lightning.
"""

import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from betavae.training.callbacks import build_callbacks
from betavae.training.checkpoint_io import AtomicCheckpointIO
from betavae.training.checkpointing import RunCheckpoints, stage_metrics
from betavae.training.checkpoints import check_checkpoint_fits, newest_readable_checkpoint
from betavae.training.disentanglement import test_mig
from betavae.training.divergence import Diverged
from betavae.training.hparams import record_hparams, sweep_of
from betavae.training.module import VAEModule
from betavae.training.results import (
    diverged_metrics,
    final_metrics,
    run_description,
    summary,
)
from betavae.training.run_dir import (
    AUTO_RESUME,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    clear_unfinished_attempt,
    read_metrics,
    removed_if_start_fails,
    require_new_run_dir,
    require_same_config,
    resumed_config,
    run_status,
    set_aside_final_metrics,
    write_metrics,
)
from betavae.training.signals import STOP_REQUESTS
from betavae.training.stopping import GracefulStop
from betavae.training.tensorboard import tensorboard_logdir
from betavae.training.trainer_setup import build_trainer, check_devices
from betavae.user_paths import shown_path, user_path


def train(cfg: DictConfig, run_dir: Path, task_overrides: list[str]) -> dict[str, Any]:
    """Train and test one model in `run_dir`; return its metrics.json (status: finished or
    diverged). A signal ends it with `RunStopped` instead, leaving it resumable.

    `cfg` has been validated by the caller (the train app, before importing this module).
    Every rank of a DDP run calls this; only rank zero writes files and prints.
    """
    STOP_REQUESTS.install()
    _quiet_lightning()
    if cfg.resume == AUTO_RESUME and _has_ended(cfg, run_dir):
        return read_metrics(run_dir)
    root, rank_zero = Path(cfg.paths.output_dir), rank_zero_only.rank == 0
    with removed_if_start_fails(run_dir, root, may_remove=rank_zero):
        datamodule, module, checkpoint, cfg = _prepare(cfg, run_dir, task_overrides)
    checkpoints = RunCheckpoints(
        run_dir / CHECKPOINT_DIR,
        cfg.callbacks.checkpoint.every_n_train_steps,
        cfg.callbacks.checkpoint.every_n_minutes,
    )
    # A progress bar is for a terminal; into a file it would write a line at every redraw.
    progress_bar = cfg.trainer.enable_progress_bar and sys.stdout.isatty()
    trainer = build_trainer(
        OmegaConf.merge(cfg.trainer, {"enable_progress_bar": progress_bar}),
        logger=instantiate(cfg.logger, save_dir=str(run_dir)),
        callbacks=[
            *build_callbacks(
                cfg.callbacks,
                progress_bar,
                cfg.trainer.log_every_n_steps,
                getattr(datamodule, "factor_names", None),
            ),
            GracefulStop(STOP_REQUESTS, checkpoints),
            checkpoints,
        ],
        plugins=[AtomicCheckpointIO(), *_cluster_environment()],
        default_root_dir=run_dir,
        # One line of ours (below) says what is trained, instead of Lightning's table.
        enable_model_summary=False,
    )
    if isinstance(trainer.accelerator, CPUAccelerator):
        _stop_per_step_cuda_probes()
    if trainer.is_global_zero:
        print(run_description(trainer, cfg, module, datamodule, run_dir))
        record_hparams(run_dir)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
    except Diverged as diverged:
        return _report(trainer, run_dir, root, diverged_metrics(trainer, checkpoints, diverged))
    STOP_REQUESTS.raise_if_requested(trainer.global_step)
    trainer.test(module, datamodule=datamodule, ckpt_path=checkpoints.best_path, verbose=False)
    test = stage_metrics(trainer.callback_metrics, "test")
    # The best checkpoint's weights, which `test` loaded into the module.
    test.update(test_mig(module.vae, datamodule))
    STOP_REQUESTS.raise_if_requested(trainer.global_step)
    metrics = final_metrics(trainer, checkpoints, test)
    return _report(trainer, run_dir, root, metrics)


def _report(
    trainer: pl.Trainer, run_dir: Path, root: Path, metrics: dict[str, Any]
) -> dict[str, Any]:
    """Write metrics.json, the run's last file, its HPARAMS session's end, and show the
    summary of a finished run."""
    if trainer.is_global_zero:
        write_metrics(run_dir, metrics)
        record_hparams(run_dir)
        if not _diverged(metrics):
            print(summary(run_dir, metrics, tensorboard_logdir(run_dir, root, sweep_of(run_dir))))
    return metrics


def _diverged(metrics: dict[str, Any]) -> bool:
    return "diverged_at_step" in metrics


def returned_metric(metrics: dict[str, Any], name: str) -> float:
    """The number a sweeper optimises; NaN for a diverged run, so that Optuna records the
    trial as failed rather than ranking it."""
    return math.nan if _diverged(metrics) else metrics[name]


def _quiet_lightning() -> None:
    """Drop console lines a user cannot act on, so the ones that matter stand out (in every
    process that trains: sweep workers too)."""
    # In-memory data sets are fastest without worker processes: the advice does not apply.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # Lightning's own use of a torch API deprecated in torch 2.14.
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
    # Lightning's all_gather (the validation MIG under DDP) uses a torch API deprecated in 2.14.
    warnings.filterwarnings("ignore", ".*all_gather is deprecated.*")
    # On a machine with SLURM's commands, a hint to use srun: sweeps submit through
    # hydra/launcher=slurm instead, and a run started by hand is meant to run here.
    warnings.filterwarnings("ignore", ".*The `srun` command is available on your system.*")
    # An advertisement for a hosted logging service, printed at every start.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    # Lightning's progress messages (devices found, checkpoint restored, ...) go to the run's
    # train.log, through the root logger, instead of also onto the console.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


def _cluster_environment() -> list[SLURMEnvironment]:
    """Under SLURM, Lightning's SLURMEnvironment without its requeue handler: SIGUSR1 is ours
    (`signals`), so that the job stops at a step boundary with a checkpoint of that step."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def _stop_per_step_cuda_probes() -> None:
    """Let a CPU run ask "is CUDA available?" the cheap way again.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, which makes every
    `torch.cuda.is_available()` load and query NVML from scratch, so that the check cannot
    stop a later fork from using CUDA. Adam asks it on every step: on a machine with a CUDA
    build of torch but no GPU that measured about 0.4 ms per step. A run on the CPU never uses
    CUDA itself, and by now Lightning has made its device checks.
    """
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)


def _has_ended(cfg: DictConfig, run_dir: Path) -> bool:
    """`resume=auto`: whether this job has ended already (finished or diverged), so that it is
    skipped, untouched."""
    if not (run_dir / CONFIG_FILE).is_file():
        return False
    require_same_config(cfg, run_dir)
    status = run_status(run_dir)
    if status is not None and rank_zero_only.rank == 0:
        print(f"Skipping {run_dir}: {status} already ({METRICS_FILE} is there)")
    return status is not None


def _continue_from(run_dir: Path) -> Path | None:
    """The checkpoint a resumed run continues from; None (and a clean slate) if it has none."""
    checkpoint, notice = newest_readable_checkpoint(run_dir)
    if rank_zero_only.rank == 0:
        if notice:
            print(f"resume: {notice}")
        if checkpoint is None:
            clear_unfinished_attempt(run_dir)
        else:
            print(f"Continuing from {shown_path(checkpoint)}")
    return checkpoint


def _prepare(
    cfg: DictConfig, run_dir: Path, task_overrides: list[str]
) -> tuple[pl.LightningDataModule, VAEModule, Path | None, DictConfig]:
    """Everything that can fail because of the user, done before anything is trained."""
    check_devices(cfg.trainer)
    checkpoint = None if cfg.ckpt_path is None else user_path(cfg.ckpt_path)
    resuming = cfg.resume is not None
    if cfg.resume is not None and cfg.resume != AUTO_RESUME:
        cfg = resumed_config(cfg, task_overrides)
    if resuming and (run_dir / CONFIG_FILE).is_file():
        checkpoint = _continue_from(run_dir)
    elif rank_zero_only.rank == 0:
        require_new_run_dir(run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    module = VAEModule(image_shape=datamodule.image_shape, **OmegaConf.to_container(cfg.model))
    if checkpoint is not None:
        key = "resume" if resuming else "ckpt_path"
        check_checkpoint_fits(checkpoint, module, key, None if resuming else cfg.trainer.max_epochs)
    # Missing data fails here, before the run has files, not in the middle of `fit`.
    datamodule.prepare_data()
    datamodule.setup("fit")
    if rank_zero_only.rank == 0:
        set_aside_final_metrics(run_dir)
        OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)
    return datamodule, module, checkpoint, cfg
