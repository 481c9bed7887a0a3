"""Anomaly detection with a VAE trained on normal data: unusual inputs are explained badly.

An example's score is higher the less likely the model finds it: its negative ELBO (default),
its reconstruction error alone, or its negative importance-weighted log-likelihood. Or, with
`knn`, the higher the further the encoder's summary of it lies from those of normal examples.
"""

from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from betavae.config.model_apps import SCORES
from betavae.evaluation.collect import SplitResults
from betavae.evaluation.representation import nearest_neighbours, standardize


def anomaly_scores(
    results: SplitResults,
    score: str,
    reference: SplitResults | None = None,
    neighbours: int = 5,
) -> Tensor:
    """(N,) scores, higher = more anomalous: nats, except `knn`'s distances (which need the
    normal `reference` results); `iwae` needs results with log_px."""
    if score == "knn":
        if reference is None:
            raise ValueError("the knn score needs the normal reference results")
        return encoding_distance(reference, results, neighbours)
    if score == "elbo":
        return results.elbo
    if score == "recon":
        return results.recon
    if score == "iwae":
        if results.log_px is None:
            raise ValueError("the iwae score needs results collected with iwae_k")
        return -results.log_px
    raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")


def encoding_distance(reference: SplitResults, results: SplitResults, neighbours: int) -> Tensor:
    """(N,) mean distance from each example's (μ, log σ²) to its `neighbours` nearest among the
    reference's, each coordinate in units of its spread over the reference.

    Why: a likelihood mostly ranks inputs by how hard they are to draw (on sprites: how many
    pixels a sprite covers), not by how unlike the training data they are, while the encoder
    maps an input unlike any it was trained on to a posterior unlike any training example's.
    The k-NN distance measures how rare that posterior is without assuming a density (deep k-NN
    out-of-distribution detection, Sun et al., ICML 2022).
    """
    reference_x, x = standardize(_encoding(reference), _encoding(results))
    distances, _ = nearest_neighbours(reference_x, x, neighbours)
    return distances.mean(1)


def _encoding(results: SplitResults) -> Tensor:
    return torch.cat([results.mu, results.logvar], dim=1).float()


def quantile_threshold(normal_scores: Tensor, quantile: float) -> float:
    """The score above which an example is flagged: `quantile` of scores on normal data, so
    about (1 - quantile) of normal examples are flagged (the false-positive rate chosen)."""
    return torch.quantile(normal_scores.double(), quantile).item()


@dataclass
class Separation:
    """How well the scores separate known anomalies from normal examples (1.0 = perfectly)."""

    auroc: float
    auprc: float
    """Average precision with the anomalies as the positive class."""


def separation(scores: Tensor, is_anomaly: Tensor) -> Separation | None:
    """AUROC and AUPRC, or None when one of the two classes is missing from the examples."""
    if is_anomaly.all() or not is_anomaly.any():
        return None
    target = is_anomaly.long()
    # torchmetrics reads scores outside [0, 1] as logits and squashes them with a sigmoid, which
    # turns nats in the hundreds into a tie at 1.0; a min-max rescale keeps their order exactly.
    scores = scores.double()
    ranked = (scores - scores.min()) / (scores.max() - scores.min()).clamp_min(1e-300)
    return Separation(
        auroc=binary_auroc(ranked, target).item(),
        auprc=binary_average_precision(ranked, target).item(),
    )
