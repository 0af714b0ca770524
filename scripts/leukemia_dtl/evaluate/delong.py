"""DeLong et al. (1988) AUC variance and paired ROC test, via the midrank algorithm of Sun & Xu (2014).

DeLong ER, DeLong DM, Clarke-Pearson DL. Biometrics 44(3):837-845, 1988.
Sun X, Xu W. IEEE Signal Processing Letters 21(11):1389-1393, 2014.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata


def _auc_and_covariance(y_true, score_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of each row of ``score_rows`` and their DeLong covariance matrix."""
    positive = np.asarray(y_true).astype(bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("DeLong's AUC variance needs at least one positive and one negative case")
    pos_scores, neg_scores = score_rows[:, positive], score_rows[:, ~positive]
    # Midranks within each class and in the pooled sample give every pairwise comparison
    # (ties counted 1/2) in O(n log n) instead of building the n_pos x n_neg matrix.
    pooled_ranks = rankdata(np.hstack([pos_scores, neg_scores]), axis=1)
    pos_pooled, neg_pooled = pooled_ranks[:, :n_pos], pooled_ranks[:, n_pos:]
    pos_components = (pos_pooled - rankdata(pos_scores, axis=1)) / n_neg
    neg_components = 1.0 - (neg_pooled - rankdata(neg_scores, axis=1)) / n_pos
    aucs = pos_components.mean(axis=1)
    covariance = np.atleast_2d(np.cov(pos_components)) / n_pos + np.atleast_2d(np.cov(neg_components)) / n_neg
    return aucs, covariance


def delong_auc_variance(y_true, scores) -> tuple[float, float]:
    """ROC AUC of ``scores`` against binary ``y_true`` (1 = positive) and its DeLong variance."""
    aucs, covariance = _auc_and_covariance(y_true, np.asarray(scores, dtype=float)[np.newaxis, :])
    return float(aucs[0]), float(covariance[0, 0])


def delong_roc_test(y_true, scores_a, scores_b) -> dict:
    """Two-sided DeLong test that two correlated ROC curves (same cases) have equal AUC."""
    score_rows = np.vstack([np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)])
    (auc_a, auc_b), covariance = _auc_and_covariance(y_true, score_rows)
    diff_variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    # Identical curves give 0/0: no evidence either way, reported as NaN rather than a warning.
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (auc_a - auc_b) / np.sqrt(diff_variance)
    return {
        "auc_a": float(auc_a),
        "auc_b": float(auc_b),
        "diff": float(auc_a - auc_b),
        "z": float(z),
        "p_value": float(2 * norm.sf(abs(z))),
    }
