"""One training run carried out as planned: data, model and Trainer; fit, test, report.

The train app imports this only once the config has been validated and the run planned
(`betavae.lifecycle.plan`), so a mistake on the command line is reported in a second rather
than after importing torch and Lightning.
"""

import gc
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from betavae.data.base import class_names
from betavae.lifecycle.checkpoints import AtomicCheckpointIO, RunCheckpoints, stage_metrics
from betavae.lifecycle.divergence import Diverged
from betavae.lifecycle.layout import CHECKPOINT_DIR, DIVERGED, write_metrics
from betavae.lifecycle.plan import Action, Plan
from betavae.lifecycle.signals import STOP_REQUESTS
from betavae.lifecycle.stopping import GracefulStop
from betavae.training.callbacks import BeginRun, build_callbacks
from betavae.training.checkpoint_fit import check_checkpoint_fits
from betavae.training.disentanglement import test_metrics
from betavae.training.model_kinds import build_module
from betavae.training.results import (
    diverged_metrics,
    final_metrics,
    run_description,
    summary,
)
from betavae.training.tensorboard import tensorboard_logdir
from betavae.training.tensorboard_hparams import record_hparams
from betavae.training.trainer_setup import build_trainer, check_devices


def train(plan: Plan) -> dict[str, Any]:
    """Carry out `plan` (start, continue, extend or fork a run) and return its metrics.json
    (status: finished or diverged). A signal ends it with `RunStopped` instead, leaving it
    resumable.

    Every rank of a DDP run calls this; only rank zero writes files and prints.
    """
    _quiet_lightning()
    cfg, run_dir = plan.config, plan.run_dir
    check_devices(cfg.trainer)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    # Missing data, or labels it lacks, fail here, before the run has files, not in the middle
    # of `fit`; M2 counts the data's classes.
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg.model, datamodule)
    if plan.checkpoint is not None:
        key = "ckpt_path" if plan.action is Action.FORK else "resume"
        check_checkpoint_fits(plan.checkpoint, module, key)
    checkpoints = RunCheckpoints(
        run_dir / CHECKPOINT_DIR,
        cfg.callbacks.checkpoint.every_n_train_steps,
        cfg.callbacks.checkpoint.every_n_minutes,
        new_best=plan.action is Action.FORK,
    )
    # A progress bar is for a terminal; into a file it would write a line at every redraw.
    progress_bar = cfg.trainer.enable_progress_bar and sys.stdout.isatty()
    trainer = build_trainer(
        OmegaConf.merge(cfg.trainer, {"enable_progress_bar": progress_bar}),
        logger=instantiate(cfg.logger, save_dir=str(run_dir)),
        callbacks=[
            BeginRun(plan),
            *build_callbacks(
                cfg.callbacks,
                progress_bar,
                cfg.trainer.log_every_n_steps,
                getattr(datamodule, "factor_names", None),
                class_names(datamodule.train_set),
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
        print(
            "\n".join([*plan.notices, run_description(trainer, cfg, module, datamodule, run_dir)])
        )
    root = Path(cfg.paths.output_dir)
    try:
        with _long_lived_objects_left_alone():
            trainer.fit(module, datamodule=datamodule, ckpt_path=plan.checkpoint)
    except Diverged as diverged:
        return _report(trainer, plan, root, diverged_metrics(trainer, checkpoints, diverged))
    STOP_REQUESTS.raise_if_requested(trainer.global_step)
    # The best checkpoint's weights; a run that never validated (a fork given too few epochs
    # to reach a validation epoch) has none, and is tested as it ended.
    tested = checkpoints.best_path if checkpoints.best_path.is_file() else None
    trainer.test(module, datamodule=datamodule, ckpt_path=tested, verbose=False)
    test = stage_metrics(trainer.callback_metrics, "test")
    evaluation = cfg.evaluation
    test.update(test_metrics(module.vae, datamodule, evaluation.test_metrics, evaluation.samples))
    STOP_REQUESTS.raise_if_requested(trainer.global_step)
    metrics = final_metrics(trainer, checkpoints, test)
    return _report(trainer, plan, root, metrics)


def _report(trainer: pl.Trainer, plan: Plan, root: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.json, the run's last file, its HPARAMS session's end, and show the
    summary of a finished run."""
    if trainer.is_global_zero:
        write_metrics(plan.run_dir, metrics)
    # From here a signal has nothing left to stop (every rank: SLURM signals them all).
    STOP_REQUESTS.results_written()
    if trainer.is_global_zero:
        record_hparams(plan.run_dir, plan.sweep_dir)
        if metrics["status"] != DIVERGED:
            logdir = tensorboard_logdir(plan.run_dir, root, plan.sweep_dir)
            print(summary(plan.run_dir, metrics, logdir))
    return metrics


@contextmanager
def _long_lived_objects_left_alone() -> Iterator[None]:
    """Keep the objects made before training (the imports' half a million functions, classes
    and modules, the config, the model) out of Python's full garbage collections during it.

    Each full collection walks every object the collector tracks: about 0.2 s here, one of
    which fell in every short run, a tenth of a 12-epoch run on 3,600 images
    (benchmarks/throughput.py, small data). After training they are tracked as before, so
    that anything of this run left in reference cycles is still collected.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _quiet_lightning() -> None:
    """Drop console lines a user cannot act on, so the ones that matter stand out (in every
    process that trains: sweep workers too)."""
    # In-memory data sets are fastest without worker processes: the advice does not apply.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # Lightning's own use of a torch API deprecated in torch 2.14.
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
    # Lightning's all_gather (the validation MIG under DDP) uses a torch API deprecated in 2.14.
    warnings.filterwarnings("ignore", ".*all_gather is deprecated.*")
    # Lightning 2.6's DDP wraps the model on a side CUDA stream, and torch then warns at the first
    # backward that the gradients' streams differ (Lightning issue 21567, fixed after 2.6.6).
    warnings.filterwarnings("ignore", ".*AccumulateGrad node's stream does not match.*")
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
