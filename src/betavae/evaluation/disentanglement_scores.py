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
from betavae.evaluation.disentanglement_names import DISENTANGLEMENT_SCORES, SAMPLES, SampleCounts
from betavae.evaluation.ground_truth import GroundTruthData, Representation, sample_codes
from betavae.evaluation.intervention_scores import beta_vae_score, factor_vae_score
from betavae.evaluation.modularity import explicitness, modularity
from betavae.evaluation.sap import sap_score

_INTERVENING = ("beta_vae_score", "factor_vae_score")
_DCI = ("dci_disentanglement", "dci_completeness", "dci_informativeness_test")


def disentanglement_scores(
    data: GroundTruthData,
    representation: Representation,
    names: Collection[str] = tuple(DISENTANGLEMENT_SCORES),
    seed: int = 0,
    samples: SampleCounts = SAMPLES["paper"],
) -> dict[str, float]:
    """The metrics `names` (all by default) of `representation` on `data`, in the order of
    `DISENTANGLEMENT_SCORES`, drawing `samples` (by default disentanglement_lib's counts)."""
    unknown = [name for name in names if name not in DISENTANGLEMENT_SCORES]
    if unknown:
        raise UserError(
            f"{unknown[0]}: no such disentanglement score; choose from "
            + ", ".join(DISENTANGLEMENT_SCORES)
        )
    scores: dict[str, float] = {}
    points = {"num_train": samples.num_train, "num_eval": samples.num_test}
    if "beta_vae_score" in names:
        scores["beta_vae_score"] = beta_vae_score(data, representation, _generator(seed), **points)
    if "factor_vae_score" in names:
        variance = {"num_variance_estimate": samples.num_train}
        scores["factor_vae_score"] = factor_vae_score(
            data, representation, _generator(seed), **points, **variance
        )
    if all(name in _INTERVENING for name in names):
        return scores
    draw = _generator(seed)
    train = sample_codes(data, representation, samples.num_train, draw)
    test = sample_codes(data, representation, samples.num_test, draw)
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
