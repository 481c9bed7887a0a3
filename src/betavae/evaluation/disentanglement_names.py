"""The disentanglement metrics by name: what each means, and how many examples they draw.

Apart from the code that computes them so that the config schemas, TensorBoard's descriptions
and the sweep report, which only name them, import neither torch nor scikit-learn.
"""

from dataclasses import dataclass

# Every name, with its range and meaning in one line. K is the number of factors.
DISENTANGLEMENT_SCORES: dict[str, str] = {
    "beta_vae_score": "0-1, chance 1/K: a linear classifier names the factor held fixed in pairs "
    "of examples from their mean |z1 - z2|",
    "factor_vae_score": "0-1, chance 1/K: a majority vote names the factor held fixed in a batch "
    "from the dimension whose variance shrank the most",
    "mig": "0-1: mean over factors of the gap in mutual information (over the factor's entropy) "
    "between its two most informative dimensions",
    "sap": "0-1: mean over factors of the gap in accuracy between the two dimensions that best "
    "predict it alone (linear SVM); capped well below 1 for factors with many values",
    "dci_disentanglement": "0-1: how much each dimension's importance (boosted trees) goes to one "
    "factor only, weighted by the dimension's importance",
    "dci_completeness": "0-1: how much each factor's importance comes from one dimension only",
    "dci_informativeness_test": "0-1: held-out accuracy of boosted trees predicting each factor "
    "from all dimensions, mean over factors",
    "modularity": "0-1: how much each dimension's mutual information goes to one factor only, "
    "mean over dimensions (noise is not 0: see betavae.evaluation.modularity)",
    "explicitness_test": "0.5-1, chance 0.5: held-out ROC AUC of a logistic regression reading "
    "each factor's values from all dimensions, mean over factors",
}


# A run measures MIG on its test split; these on examples drawn afresh from the factors.
DRAWN_SCORES = tuple(name for name in DISENTANGLEMENT_SCORES if name != "mig")


def test_key(name: str) -> str:
    """Where a run's metrics.json (and TensorBoard) hold a metric of its best checkpoint."""
    return f"test/{name}"


@dataclass(frozen=True)
class SampleCounts:
    """How many examples the metrics draw. `num_train` random examples fit the classifiers
    (and are MIG's and modularity's whole sample), `num_test` score them; the BetaVAE and
    FactorVAE scores fit on `num_train` and score on `num_test` points of a batch of 64
    examples each (pairs, for the BetaVAE score), and the FactorVAE score estimates each
    dimension's variance from `num_train` examples."""

    num_train: int
    num_test: int

    def __str__(self) -> str:
        return f"{self.num_train:,} / {self.num_test:,}"


# `paper`: disentanglement_lib's gin defaults (metric_configs/*.gin), as the 2019 study ran them;
# on one CPU core DCI then takes about 6 minutes and the BetaVAE score, which renders and
# encodes 1.9 million images, 12. `quick`: a fifth of them, a few minutes for all nine.
SAMPLES: dict[str, SampleCounts] = {
    "quick": SampleCounts(num_train=2_000, num_test=1_000),
    "paper": SampleCounts(num_train=10_000, num_test=5_000),
}
