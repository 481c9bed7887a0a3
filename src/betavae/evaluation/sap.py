"""The Separated Attribute Predictability score (Kumar et al. 2018): is each factor predicted
well by one code dimension and badly by every other?

For every factor and every dimension, the test accuracy of a linear SVM that predicts the factor
from that dimension alone; SAP is the mean over factors of the gap between the best and the
second-best dimension. As disentanglement_lib computes it for discrete factors
(evaluation/metrics/sap_score.py, metric_configs/sap_score.gin: continuous_factors=False): a
`LinearSVC(C=0.01, class_weight="balanced")`. One dimension read linearly separates ordered
classes only at the ends, so for a factor with many values even a perfect code is far from 1.
"""

import numpy as np
from sklearn.svm import LinearSVC
from torch import Tensor


def sap_score(
    codes_train: Tensor, factors_train: Tensor, codes_test: Tensor, factors_test: Tensor
) -> float:
    """SAP in [0, 1] for codes (N, D) against discrete factor indices (N, K), train and test."""
    accuracy = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    for d in range(codes_train.shape[1]):
        x_train, x_test = codes_train[:, d, None].numpy(), codes_test[:, d, None].numpy()
        for k in range(factors_train.shape[1]):
            classifier = LinearSVC(C=0.01, class_weight="balanced")
            classifier.fit(x_train, factors_train[:, k].numpy())
            accuracy[d, k] = np.mean(classifier.predict(x_test) == factors_test[:, k].numpy())
    top_two = np.sort(accuracy, axis=0)[-2:]
    return float(np.mean(top_two[1] - top_two[0]))
