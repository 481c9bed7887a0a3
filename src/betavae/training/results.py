"""What a run reports: what it trains, and at the end metrics.json and a console summary."""

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig

from betavae.evaluation.classifier_keys import TEST_ACCURACY, TEST_CROSS_ENTROPY
from betavae.evaluation.disentanglement_names import DRAWN_SCORES, test_key
from betavae.evaluation.metrics import format_mig
from betavae.evaluation.mig_keys import MIG, MIG_LEFT_OUT, mig_gaps
from betavae.lifecycle.checkpoints import RunCheckpoints
from betavae.lifecycle.commands import Compose, new_run_command, resume_command, shell_word
from betavae.lifecycle.divergence import Diverged
from betavae.lifecycle.layout import DIVERGED, FINISHED, METRICS_FILE, read_config
from betavae.user_paths import shown_path


def _checkpoint_paths(checkpoints: RunCheckpoints) -> dict[str, Any]:
    best, last = checkpoints.best_path, checkpoints.last_path
    return {
        "best_val_elbo": checkpoints.best_score,
        "best_checkpoint": str(best.resolve()) if best.is_file() else None,
        "last_checkpoint": str(last.resolve()) if last.is_file() else None,
    }


def final_metrics(
    trainer: pl.Trainer, checkpoints: RunCheckpoints, test: dict[str, float]
) -> dict[str, Any]:
    """Final-epoch validation metrics, test metrics of the best checkpoint, and where it is."""
    return {
        "status": FINISHED,
        **(checkpoints.val_metrics or {}),
        **test,
        **_checkpoint_paths(checkpoints),
        # A run that never validated (a fork given too few epochs) has no best checkpoint.
        "tested": "best checkpoint" if checkpoints.best_path.is_file() else "final weights",
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
    }


def diverged_metrics(
    trainer: pl.Trainer, checkpoints: RunCheckpoints, diverged: Diverged
) -> dict[str, Any]:
    """What a diverged run leaves: where, and its best checkpoint (of finite weights)."""
    return {
        "status": DIVERGED,
        "diverged_at_step": diverged.step,
        "diverged_loss": str(diverged.loss),
        **_checkpoint_paths(checkpoints),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
    }


def run_description(
    trainer: pl.Trainer,
    cfg: DictConfig,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    run_dir: Path,
) -> str:
    """The line that says what is about to be trained, where, and how long."""
    parameters = sum(p.numel() for p in module.vae.parameters())
    examples = len(datamodule.train_set)
    image = "x".join(map(str, datamodule.image_shape))
    images = f"{examples:,} images {image}"
    labelled = datamodule.labelled_set
    if labelled is not None:  # M2: the training batches are the unlabelled images'
        examples -= len(labelled)
        images += (
            f", {len(labelled):,} of them labelled ({datamodule.labels_per_class} per class, "
            f"label seed {datamodule.label_seed})"
        )
    steps = math.ceil(examples / (datamodule.batch_size * trainer.world_size))
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    processes = f" x {trainer.world_size}" if trainer.world_size > 1 else ""
    epochs = cfg.trainer.max_epochs
    return (
        f"Training a {cfg.model.network} VAE (latent {cfg.model.latent_dim}, {parameters:,} "
        f"parameters, {objective_summary(cfg.model)}) on {images}: "
        f"{epochs} epoch{'s' * (epochs != 1)} of {steps} steps, {device}{processes}, "
        f"{trainer.precision}, in {shown_path(run_dir)}"
    )


def objective_summary(model: DictConfig) -> str:
    """The objective and the weight that sets it: `beta 4`, `FactorVAE, gamma 10`, ..."""
    return {
        "beta": f"beta {model.beta:g}",
        "beta_tc": f"beta-TC, beta {model.beta:g}",
        "capacity": f"capacity to {model.capacity_max:g} nats, gamma {model.capacity_gamma:g}",
        "factor_vae": f"FactorVAE, gamma {model.factor_vae_gamma:g}",
        "dip_vae_i": f"DIP-VAE-I, lambda_od {model.dip_lambda_od:g}",
        "dip_vae_ii": f"DIP-VAE-II, lambda_od {model.dip_lambda_od:g}",
        "m2": f"M2, alpha {model.m2_alpha:g}",
    }[model.objective]


def summary(run_dir: Path, metrics: dict[str, Any], tensorboard_logdir: Path) -> str:
    """The few lines a user reads at the end: how good the model is, and where things went."""
    tested = (
        "best ckpt" if metrics.get("tested", "best checkpoint") == "best checkpoint" else "final"
    )
    rows = [
        ("val (last epoch)", "val"),
        (f"test ({tested})", "test"),
    ]
    epochs = metrics["epochs"]
    lines = [
        f"Trained {epochs} epoch{'s' * (epochs != 1)}, {metrics['global_step']} steps "
        "(nats/example):"
    ]
    lines.append(f"  {'':18}{'elbo':>10}{'recon':>10}{'kl':>10}")
    for label, stage in rows:
        if f"{stage}/elbo" not in metrics:  # a run that never validated
            continue
        values = "".join(f"{metrics[f'{stage}/{m}']:>10.2f}" for m in ("elbo", "recon", "kl"))
        lines.append(f"  {label:18}{values}")
    if MIG in metrics or MIG_LEFT_OUT in metrics:
        row = format_mig(metrics.get(MIG), mig_gaps(metrics), metrics.get(MIG_LEFT_OUT))
        lines.append(f"  {'test MIG':18}{row}")
    drawn = {f"test {n}": metrics[test_key(n)] for n in DRAWN_SCORES if test_key(n) in metrics}
    width = max([20, *map(len, drawn)])  # values under the MIG's where the names allow
    lines += [f"  {label:{width}}{value:>8.3f}" for label, value in drawn.items()]
    if TEST_ACCURACY in metrics:
        cross_entropy = metrics[TEST_CROSS_ENTROPY]
        row = f"{metrics[TEST_ACCURACY]:>10.3f}   (q(y|x); cross-entropy {cross_entropy:.3f} nats)"
        lines.append(f"  {'test accuracy':18}{row}")
    best = metrics["best_checkpoint"]
    lines += [
        f"Run directory:   {shown_path(run_dir)}",
        f"Best checkpoint: {shown_path(best) if best else 'none (no validation epoch)'}",
        f"Metrics:         {shown_path(run_dir / METRICS_FILE)}",
        f"TensorBoard:     tensorboard --logdir {shell_word(shown_path(tensorboard_logdir))}",
        f"Train it longer: {resume_command(run_dir, 2 * epochs)}",
    ]
    return "\n".join(lines)


def diverged_line(run_dir: Path, metrics: dict[str, Any], compose: Compose) -> str:
    """One line for a diverged run: where, and the run again with a lower learning rate."""
    config = read_config(run_dir)
    others = []
    if not config.trainer.gradient_clip_val:
        others.append("trainer.gradient_clip_val=1.0")
    if config.trainer.precision != "32-true":
        others.append("trainer.precision=32-true")
    also = f" (or add {' or '.join(others)})" if others else ""
    best = metrics["best_checkpoint"]
    kept = f"; its best checkpoint, {shown_path(best)}, is finite" if best else ""
    command = new_run_command(run_dir, {"model.lr": config.model.lr / 10}, compose)
    return (
        f"{shown_path(run_dir)} diverged at step {metrics['diverged_at_step']} (training loss "
        f"{metrics['diverged_loss']}){kept}; try a lower learning rate: {command}{also}"
    )
