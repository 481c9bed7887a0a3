"""Modularity and explicitness (Ridgeway & Mozer 2018).

Modularity: does each code dimension carry information about one factor only? For each
dimension, 1 − (Σₖ m²ₖ − max m²) / ((K − 1)·max m²), m its mutual information with each factor
(the same 20-bin histogram estimate as the MIG); a dimension with no information scores 0.
Explicitness: can all factors be read linearly from the code? The test ROC AUC, one class
against the rest and averaged over a factor's values, of a logistic regression fitted on the
standardised codes; the mean over factors. As disentanglement_lib computes them
(evaluation/metrics/modularity_explicitness.py, metric_configs/modularity_explicitness.gin).

The histogram estimate of mutual information is biased upwards by (bins − 1)(values − 1) / 2N,
so a dimension of pure noise looks more "modular" towards factors with more values: with
factors of unequal sizes noise scores well above 0.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from torch import Tensor

from betavae.evaluation.disentanglement import mutual_information
from betavae.evaluation.representation import standardize


def modularity(codes: Tensor, factors: Tensor) -> float:
    """Modularity in [0, 1] of codes (N, D) against discrete factor indices (N, K)."""
    squared = mutual_information(codes, factors).square()
    top = squared.max(dim=1).values
    spread = (squared.sum(dim=1) - top) / (top * (squared.shape[1] - 1))
    return (1 - spread).where(top > 0, 0.0).mean().item()


def explicitness(
    codes_train: Tensor, factors_train: Tensor, codes_test: Tensor, factors_test: Tensor
) -> float:
    """Mean test ROC AUC in [0, 1] (0.5 = chance) of reading each factor from codes (N, D)
    linearly, for discrete factor indices (N, K), train and test."""
    x_train, x_test = (x.numpy() for x in standardize(codes_train, codes_test))
    areas = []
    for k in range(factors_train.shape[1]):
        classifier = LogisticRegression().fit(x_train, factors_train[:, k].numpy())
        truth = factors_test[:, k, None].numpy() == classifier.classes_[None, :]
        # One-vs-rest per value, averaged over the values that occur in the test set.
        seen = truth.any(axis=0)
        areas.append(roc_auc_score(truth[:, seen], classifier.predict_proba(x_test)[:, seen]))
    return float(np.mean(areas))
