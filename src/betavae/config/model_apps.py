"""Schemas of the apps that use a trained model: betavae-eval, -sample, -encode and -score.

They share `run=` (which model) and an optional `data=` (another data set than the run's);
each adds its own keys, range-checked like the training config's (see `schema`).
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore

from betavae.config.schema import PathsConfig, _Checked, check_disentanglement_metrics

# `all` is every example of the data set; the others are a training run's splits.
SPLITS = ("train", "val", "test", "all")
SCORES = ("elbo", "recon", "iwae", "knn")


@dataclass
class UsageConfig(_Checked):
    section: ClassVar[str] = ""
    run: str | None = None
    """A run directory (its best checkpoint is used) or a .ckpt file in its checkpoints/."""
    data: dict[str, Any] = field(default_factory=dict)
    """A data group's config (`data=mnist ...`): another data set; else changes to the run's
    own data config (`+data.batch_size=32`)."""
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    overwrite: bool = False
    """Replace a result file of the same name (same options) from an earlier run."""

    def _require_split(self, split: str | None) -> None:
        allowed = f"one of {', '.join(SPLITS)}, or null (test; all with data=)"
        self._require(split is None or split in SPLITS, "split", allowed)


@dataclass
class EvalConfig(UsageConfig):
    split: str | None = None
    k: int = 100
    metrics: list[str] | None = None
    """The disentanglement metrics, on data with generative factors; None: all of them."""
    samples: str = "quick"
    labels_per_class: int | None = None
    """Few-label probes, fitted on this many labelled training examples per class."""
    label_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """The seeds of the labelled examples chosen: one fit each, reported as mean and sd."""

    def __post_init__(self) -> None:
        self._require_split(self.split)
        self._require(self.k >= 1, "k", "an integer >= 1 (importance samples per example)")
        check_disentanglement_metrics(self, "metrics", "samples")
        labels = self.labels_per_class
        allowed = "null (no few-label probes) or an integer >= 1"
        self._require(labels is None or labels >= 1, "labels_per_class", allowed)
        seeds_ok = len(set(self.label_seeds)) >= 2
        allowed = "at least two different seeds, e.g. [0,1,2] (a mean and an sd over them)"
        self._require(seeds_ok, "label_seeds", allowed)


@dataclass
class SampleConfig(UsageConfig):
    n: int = 64
    traverse: bool = True
    interpolate: bool = True
    span: float = 3.0
    steps: int = 10
    pairs: int = 8

    def __post_init__(self) -> None:
        self._require_counts("n", "pairs")
        self._require(self.span > 0, "span", "a number > 0 (traversals sweep -span..span)")
        self._require(self.steps >= 2, "steps", "an integer >= 2")


@dataclass
class EncodeConfig(UsageConfig):
    split: str | None = None

    def __post_init__(self) -> None:
        self._require_split(self.split)


@dataclass
class ScoreConfig(UsageConfig):
    split: str | None = None
    score: str = "elbo"
    quantile: float = 0.99
    k: int = 100
    neighbours: int = 5
    anomalous_classes: list[int] | None = None

    def __post_init__(self) -> None:
        self._require_split(self.split)
        self._require(self.score in SCORES, "score", f"one of {', '.join(SCORES)}")
        self._require(0 < self.quantile < 1, "quantile", "a number in (0, 1)")
        self._require(self.k >= 1, "k", "an integer >= 1 (importance samples for score=iwae)")
        self._require(self.neighbours >= 1, "neighbours", "an integer >= 1 (for score=knn)")


def register_usage_schemas() -> None:
    store = ConfigStore.instance()
    for name, node in {
        "eval": EvalConfig,
        "sample": SampleConfig,
        "encode": EncodeConfig,
        "score": ScoreConfig,
    }.items():
        store.store(name=f"{name}_schema", node=node)
