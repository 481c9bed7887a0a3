"""The numbers `betavae-eval` reports, gathered from per-example results into one dict."""

import math
from typing import Any

from torch import Tensor

from betavae.evaluation.collect import SplitResults
from betavae.evaluation.disentanglement import (
    discretize_factors,
    mig_unavailable,
    mutual_information_gap,
)
from betavae.evaluation.mig_keys import MIG_LEFT_OUT
from betavae.evaluation.representation import active_units, knn_accuracy, linear_probe_accuracy


def bits_per_dim(nats: float, image_shape: tuple[int, ...]) -> float:
    """Nats per example to bits per pixel-channel, the unit likelihoods are compared in."""
    return nats / (math.prod(image_shape) * math.log(2))


def likelihood_metrics(results: SplitResults, image_shape: tuple[int, ...]) -> dict[str, Any]:
    """Negative ELBO, recon, KL and the IWAE negative log-likelihood, in nats and bits/dim."""
    nats = {
        "elbo": results.elbo.mean().item(),
        "recon": results.recon.mean().item(),
        "kl": results.total_kl.mean().item(),
    }
    if results.log_px is not None:
        nats["nll_iwae"] = -results.log_px.mean().item()
    metrics: dict[str, Any] = dict(nats)
    metrics.update({f"{name}_bpd": bits_per_dim(v, image_shape) for name, v in nats.items()})
    return metrics


def latent_metrics(results: SplitResults) -> dict[str, Any]:
    active = active_units(results.mu)
    return {
        "kl_per_dim": results.kl.mean(0).tolist(),
        "active_units": int(active.sum()),
        "active_dims": active.nonzero().flatten().tolist(),
    }


def probe_metrics(
    train_mu: Tensor, train_labels: Tensor, mu: Tensor, labels: Tensor
) -> dict[str, float]:
    """Linear-probe and 5-NN accuracy of predicting the label from μ; the chance level with it."""
    majority = labels.bincount().max().item() / len(labels)
    return {
        "linear_probe_accuracy": linear_probe_accuracy(train_mu, train_labels, mu, labels),
        "knn_accuracy": knn_accuracy(train_mu, train_labels, mu, labels),
        "majority_class_accuracy": majority,
    }


def classifier_metrics(class_probs: Tensor, labels: Tensor) -> dict[str, float]:
    """M2's classifier q(y|x) (N, K) against the labels: accuracy, and cross-entropy in nats."""
    of_label = class_probs.double().gather(1, labels[:, None]).squeeze(1)
    return {
        "classifier_accuracy": (class_probs.argmax(1) == labels).double().mean().item(),
        "classifier_cross_entropy": -of_label.clamp_min(1e-300).log().mean().item(),
    }


def mig_metrics(mu: Tensor, factors: Tensor, factor_names: tuple[str, ...]) -> dict[str, Any]:
    """MIG and each factor's gap; or, where the examples cannot measure it, why not."""
    ids = discretize_factors(factors)
    reason = mig_unavailable(ids)
    if reason is not None:
        return {MIG_LEFT_OUT: reason}
    mig, gaps = mutual_information_gap(mu, ids)
    return {"mig": mig, "mig_per_factor": dict(zip(factor_names, gaps, strict=True))}


def format_mig(mig: float | None, gaps: dict[str, float | None], left_out: str | None) -> str:
    """`0.012   (shape 0.00, ...)`, or `n/a   (why)`: the MIG row of the printed tables."""
    if mig is None:
        return f"{'n/a':>10}   ({left_out})"
    return f"{mig:>10.3f}   ({format_gaps(gaps)})"


def format_gaps(gaps: dict[str, float | None]) -> str:
    """'shape 0.01, scale 0.12, ...': each factor's MIG gap, for the tables the apps print."""
    return ", ".join(f"{name} {gap:.2f}" for name, gap in gaps.items() if gap is not None)
