"""The standard disentanglement metrics of disentanglement_lib (Locatello et al. 2019) at once,
with its defaults, under stable names: what a run reports about its code and the true factors.

Each metric draws from its own generator seeded by `seed`, as each of disentanglement_lib's
evaluations starts from its own random seed, so a metric's number does not depend on which
others were asked for. MIG, SAP, DCI, modularity and explicitness share one draw of codes.
"""

from collections.abc import Collection

import torch

from betavae.errors import UserError
from betavae.evaluation.dci import dci
from betavae.evaluation.disentanglement import mutual_information_gap
from betavae.evaluation.ground_truth import GroundTruthData, Representation, sample_codes
from betavae.evaluation.intervention_scores import beta_vae_score, factor_vae_score
from betavae.evaluation.modularity import explicitness, modularity
from betavae.evaluation.sap import sap_score

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

# disentanglement_lib's gin defaults for the metrics on random examples (metric_configs/
# mig.gin, sap_score.gin, dci.gin, modularity_explicitness.gin): MIG and modularity use the
# training draw alone.
NUM_TRAIN = 10_000
NUM_TEST = 5_000

_INTERVENING = ("beta_vae_score", "factor_vae_score")
_DCI = ("dci_disentanglement", "dci_completeness", "dci_informativeness_test")


def disentanglement_scores(
    data: GroundTruthData,
    representation: Representation,
    names: Collection[str] = tuple(DISENTANGLEMENT_SCORES),
    seed: int = 0,
) -> dict[str, float]:
    """The metrics `names` (all by default) of `representation` on `data`, in the order of
    `DISENTANGLEMENT_SCORES`."""
    unknown = [name for name in names if name not in DISENTANGLEMENT_SCORES]
    if unknown:
        raise UserError(
            f"{unknown[0]}: no such disentanglement score; choose from "
            + ", ".join(DISENTANGLEMENT_SCORES)
        )
    scores: dict[str, float] = {}
    if "beta_vae_score" in names:
        scores["beta_vae_score"] = beta_vae_score(data, representation, _generator(seed))
    if "factor_vae_score" in names:
        scores["factor_vae_score"] = factor_vae_score(data, representation, _generator(seed))
    if all(name in _INTERVENING for name in names):
        return scores
    draw = _generator(seed)
    train = sample_codes(data, representation, NUM_TRAIN, draw)
    test = sample_codes(data, representation, NUM_TEST, draw)
    if "mig" in names:
        scores["mig"] = mutual_information_gap(*train)[0]
    if "sap" in names:
        scores["sap"] = sap_score(*train, *test)
    if any(name in _DCI for name in names):
        scores.update({f"dci_{key}": value for key, value in dci(*train, *test).items()})
    if "modularity" in names:
        scores["modularity"] = modularity(*train)
    if "explicitness_test" in names:
        scores["explicitness_test"] = explicitness(*train, *test)
    return {name: scores[name] for name in DISENTANGLEMENT_SCORES if name in names}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
