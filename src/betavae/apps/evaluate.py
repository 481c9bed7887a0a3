"""`betavae-eval`: how good a trained model is, on one split, as metrics.json and a table."""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import Tensor

from betavae.apps.model_apps import (
    data_split,
    examples,
    open_run,
)
from betavae.apps.result_files import Results
from betavae.data.base import BaseDataModule, class_labels, class_names
from betavae.data.labelled import check_labels_per_class
from betavae.evaluation.collect import run_split, split_images
from betavae.evaluation.disentanglement_names import DISENTANGLEMENT_SCORES, SAMPLES
from betavae.evaluation.disentanglement_scores import disentanglement_scores
from betavae.evaluation.few_labels import few_label_probe_metrics
from betavae.evaluation.ground_truth import encoder_mean
from betavae.evaluation.metrics import (
    classifier_metrics,
    format_mig,
    latent_metrics,
    likelihood_metrics,
    mig_metrics,
    probe_metrics,
)
from betavae.evaluation.mig_keys import MIG_LEFT_OUT
from betavae.user_paths import shown_path
from betavae.vae import VAE


def evaluate(cfg: DictConfig, files: Results) -> Path:
    """Compute every metric the data allows, write them to `<run>/eval/`, print a table."""
    run = open_run(cfg)
    data = run.data_config(cfg.data)
    datamodule = run.datamodule(data)
    train_labels = class_labels(datamodule.train_set)
    if cfg.labels_per_class is not None:  # a mistake in one line, before any file is written
        names = class_names(datamodule.train_set)
        check_labels_per_class(train_labels, cfg.labels_per_class, "labels_per_class", names)
    files.claim(run.checkpoint, data, cfg)
    results = run_split(run.vae, datamodule.split_dataloader(data_split(cfg)), iwae_k=cfg.k)
    image_shape = tuple(run.module.hparams.image_shape)
    metrics: dict[str, Any] = {
        "checkpoint": str(run.checkpoint.resolve()),
        "split": data_split(cfg),
        "examples": len(results.mu),
        "k": cfg.k,
        **likelihood_metrics(results, image_shape),
        **latent_metrics(results),
    }
    labels = class_labels(datamodule.split_set(data_split(cfg)))
    factor_names = getattr(datamodule, "factor_names", None)
    if labels is not None and labels.unique().numel() > 1:
        train = run_split(run.vae, datamodule.split_dataloader("train"))
        metrics["label"] = getattr(datamodule, "class_factor", "label")
        metrics.update(probe_metrics(train.mu, train_labels, results.mu, labels))
        if cfg.labels_per_class is not None:
            metrics.update(few_label_probes(cfg, datamodule, train.mu, train_labels, results.mu))
        if results.class_probs is not None:
            metrics.update(classifier_metrics(results.class_probs, labels))
    if factor_names is not None:
        metrics.update(mig_metrics(results.mu, results.targets, factor_names))
        metrics.update(_disentanglement(cfg, run.vae, datamodule))
    path = files.write_json("metrics", metrics)
    print(table(metrics))
    print(f"Metrics: {shown_path(path)}")
    return path


def _disentanglement(cfg: DictConfig, vae: VAE, datamodule: BaseDataModule) -> dict[str, Any]:
    """The disentanglement metrics asked for, on examples drawn afresh from the data's factors,
    and how many were drawn."""
    names = list(DISENTANGLEMENT_SCORES) if cfg.metrics is None else list(cfg.metrics)
    samples = SAMPLES[cfg.samples]
    if names:
        metrics = f"{len(names)} disentanglement metric{'s' * (len(names) != 1)}"
        print(f"Drawing {_drawn(cfg.samples)} for {metrics} ...")
    scores = disentanglement_scores(
        datamodule.ground_truth(), encoder_mean(vae), names, seed=cfg.seed, samples=samples
    )
    drawn = {"samples": cfg.samples, "num_train": samples.num_train, "num_test": samples.num_test}
    return {"disentanglement": scores, "disentanglement_samples": drawn}


def _drawn(samples: str) -> str:
    """`2,000 / 1,000 examples (samples=quick)`: what the disentanglement metrics drew."""
    return f"{SAMPLES[samples]} examples (samples={samples})"


def few_label_probes(
    cfg: DictConfig, datamodule: BaseDataModule, train_mu: Tensor, train_labels: Tensor, mu: Tensor
) -> dict[str, Any]:
    """The probes fitted on `cfg.labels_per_class` training examples per class, on μ and on the
    pixels, scored on the evaluated split (whose μ is `mu`)."""
    split = data_split(cfg)
    return few_label_probe_metrics(
        train_mu,
        split_images(datamodule.split_dataloader("train")),
        train_labels,
        mu,
        split_images(datamodule.split_dataloader(split)),
        class_labels(datamodule.split_set(split)),
        cfg.labels_per_class,
        cfg.label_seeds,
    )


def table(metrics: dict[str, Any]) -> str:
    scored = examples(metrics["examples"], metrics["split"])
    lines = [
        f"{shown_path(metrics['checkpoint'])} on {scored}:",
        f"  {'':30}{'nats/example':>14}{'bits/dim':>10}",
    ]
    rows = [
        ("negative ELBO", "elbo"),
        ("reconstruction", "recon"),
        ("KL", "kl"),
        (f"-log p(x) (IWAE, k={metrics['k']})", "nll_iwae"),
    ]
    for label, key in rows:
        lines.append(f"  {label:30}{metrics[key]:>14.2f}{metrics[f'{key}_bpd']:>10.4f}")
    kl_per_dim = " ".join(f"{v:.2f}" for v in metrics["kl_per_dim"])
    units = f"{metrics['active_units']} of {len(metrics['kl_per_dim'])}"
    lines.append(f"  {'active units':30}{units:>14}   (KL per dim: {kl_per_dim})")
    if "linear_probe_accuracy" in metrics:
        for label, key in (
            ("linear probe", "linear_probe_accuracy"),
            ("5-NN", "knn_accuracy"),
            ("majority class", "majority_class_accuracy"),
        ):
            row = f"{metrics['label']} accuracy: {label}"
            lines.append(f"  {row:30}{metrics[key]:>14.3f}")
    if "classifier_accuracy" in metrics:
        row = f"{metrics['label']} accuracy: M2's q(y|x)"
        lines.append(f"  {row:30}{metrics['classifier_accuracy']:>14.3f}")
    if "labels_per_class" in metrics:
        lines += few_label_rows(metrics)
    if "mig" in metrics or MIG_LEFT_OUT in metrics:
        row = format_mig(
            metrics.get("mig"), metrics.get("mig_per_factor", {}), metrics.get(MIG_LEFT_OUT)
        )
        split = metrics["split"]
        label = "MIG (all examples)" if split == "all" else f"MIG ({split} split)"
        lines.append(f"  {label:34}{row}")
    scores = metrics.get("disentanglement")
    if scores:
        drawn = _drawn(metrics["disentanglement_samples"]["samples"])
        lines.append(f"  drawn afresh from the factors, {drawn}:")
        lines += [f"  {name:30}{value:>14.3f}" for name, value in scores.items()]
    return "\n".join(lines)


def few_label_rows(metrics: dict[str, Any]) -> list[str]:
    """The few-label probes, mean ± sd over the label seeds, μ beside the pixel baseline."""
    n, seeds = metrics["labels_per_class"], len(metrics["label_seeds"])
    lines = [
        f"  {metrics['label']} accuracy from {n} labels per class ({seeds} label seeds; "
        f"mu: {metrics['few_label_mu_dims']} active dims):",
        f"  {'':30}{'mu':>14}{'pixels':>16}",
    ]
    for label, probe in (("linear probe", "linear_probe"), (f"{min(5, n)}-NN", "knn")):
        cells = "".join(
            f"{metrics[f'few_label_{features}_{probe}_accuracy_mean']:>8.3f} ± "
            f"{metrics[f'few_label_{features}_{probe}_accuracy_sd']:.3f}"
            for features in ("mu", "pixels")
        )
        lines.append(f"    {label:28}{cells}")
    return lines
