"""What a finished run reports: metrics.json, TensorBoard's HPARAMS entry, a console summary."""

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from betavae.evaluation.metrics import format_gaps
from betavae.training.disentanglement import MIG, mig_gaps
from betavae.training.run_dir import LAST_CHECKPOINT, METRICS_FILE, TENSORBOARD_DIR

_STAGE_METRICS = ("elbo", "recon", "kl", "loss")


def stage_metrics(metrics: dict[str, Any], stage: str) -> dict[str, float]:
    """The `stage/...` epoch metrics as floats, e.g. from `trainer.callback_metrics`."""
    return {f"{stage}/{m}": float(metrics[f"{stage}/{m}"]) for m in _STAGE_METRICS}


def final_metrics(
    trainer: pl.Trainer, val: dict[str, float], test: dict[str, float], run_dir: Path
) -> dict[str, Any]:
    """Final-epoch validation metrics, test metrics of the best checkpoint, and where it is."""
    best = trainer.checkpoint_callback
    return {
        **val,
        **test,
        "best_val_elbo": float(best.best_model_score),
        "best_checkpoint": str(Path(best.best_model_path).resolve()),
        "last_checkpoint": str((run_dir / LAST_CHECKPOINT).resolve()),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
    }


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    path = run_dir / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / METRICS_FILE).read_text())


def log_hparams(trainer: pl.Trainer, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """One HPARAMS entry per run, written at the end so it holds real metrics, not -1."""
    hparams = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": {
            "name": cfg.data._target_.rsplit(".", 1)[-1].removesuffix("DataModule"),
            "batch_size": cfg.data.batch_size,
        },
        "trainer": {"precision": cfg.trainer.precision, "max_epochs": cfg.trainer.max_epochs},
        "seed": cfg.seed,
    }
    hp_metrics = {"hp/val_elbo": metrics["best_val_elbo"], "hp/test_elbo": metrics["test/elbo"]}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams, metrics=hp_metrics)


def shown_path(path: Path | str) -> str:
    """A path as the user would type it: relative to the current directory when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def summary(run_dir: Path, metrics: dict[str, Any]) -> str:
    """The few lines a user reads at the end: how good the model is, and where things went."""
    rows = [
        ("val (last epoch)", "val"),
        ("test (best ckpt)", "test"),
    ]
    lines = [f"Trained {metrics['epochs']} epochs, {metrics['global_step']} steps (nats/example):"]
    lines.append(f"  {'':18}{'elbo':>10}{'recon':>10}{'kl':>10}")
    for label, stage in rows:
        values = "".join(f"{metrics[f'{stage}/{m}']:>10.2f}" for m in ("elbo", "recon", "kl"))
        lines.append(f"  {label:18}{values}")
    if MIG in metrics:
        lines.append(f"  {'test MIG':18}{metrics[MIG]:>10.3f}   ({format_gaps(mig_gaps(metrics))})")
    lines += [
        f"Run directory:   {shown_path(run_dir)}",
        f"Best checkpoint: {shown_path(metrics['best_checkpoint'])}",
        f"Metrics:         {shown_path(run_dir / METRICS_FILE)}",
        f"TensorBoard:     tensorboard --logdir {shown_path(run_dir / TENSORBOARD_DIR)}",
        f"Continue it:     betavae-train resume={shown_path(run_dir)} trainer.max_epochs=<more>",
    ]
    return "\n".join(lines)
