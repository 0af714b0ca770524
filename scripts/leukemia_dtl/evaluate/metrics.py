"""Test-set metrics for ALL (positive) vs HEM with stratified bootstrap and DeLong confidence intervals.

Every thresholded number of a run (these metrics, the confusion figures, McNemar and agreement) calls an
image ALL through :func:`called_all` at the configured ``statistics.threshold``. The ``pred`` column of a
prediction table is the model's own argmax decision (ALL when p_all >= 0.5, whatever is configured) and is
never read as the decision here.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import NEGATIVE_CLASS, POSITIVE_CLASS
from leukemia_dtl.evaluate.delong import delong_auc_variance
from leukemia_dtl.evaluate.result_files import is_all, read_predictions


def called_all(p_all, threshold: float) -> np.ndarray:
    """1 where an image is called ALL, ``p_all >= threshold``, else 0."""
    return (np.asarray(p_all, dtype=float) >= threshold).astype(int)


def confusion_counts(y_true, p_all, threshold: float) -> np.ndarray:
    """scikit-learn's confusion matrix of the calls at ``threshold``: rows the truth, columns the call,
    each HEM (0) then ALL (1), so ``.ravel()`` gives tn, fp, fn, tp."""
    return confusion_matrix(y_true, called_all(p_all, threshold), labels=[0, 1])


def _point_estimates(y_true: np.ndarray, y_pred: np.ndarray, p_all: np.ndarray) -> dict[str, float]:
    """The reported metrics, computed by scikit-learn."""
    per_class = {
        f"{name}_{label}": score(y_true, y_pred, pos_label=pos_label, zero_division=0)
        for label, pos_label in (("all", 1), ("hem", 0))
        for name, score in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score))
    }
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        **per_class,
        "specificity": per_class["recall_hem"],
        "weighted_f1": f1_score(y_true, y_pred, average="weighted", zero_division=0),
        "roc_auc": roc_auc_score(y_true, p_all),
        "cohen_kappa": cohen_kappa_score(y_true, y_pred),
    }


def metrics_from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """The thresholded metrics of ``_point_estimates`` from confusion counts, elementwise over resamples."""
    tp, fp, tn, fn = (np.asarray(count, dtype=float) for count in (tp, fp, tn, fn))
    n_all, n_hem, n = tp + fn, tn + fp, tp + fp + tn + fn

    def ratio(numerator, denominator):
        # scikit-learn's zero_division=0: an empty denominator scores 0.
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)

    recall_all, recall_hem = ratio(tp, n_all), ratio(tn, n_hem)
    f1_all, f1_hem = ratio(2 * tp, 2 * tp + fp + fn), ratio(2 * tn, 2 * tn + fn + fp)
    accuracy = (tp + tn) / n
    chance_agreement = (n_all * (tp + fp) + n_hem * (tn + fn)) / n**2
    return {
        "accuracy": accuracy,
        "balanced_accuracy": (recall_all + recall_hem) / 2,
        "precision_all": ratio(tp, tp + fp),
        "recall_all": recall_all,
        "f1_all": f1_all,
        "precision_hem": ratio(tn, tn + fn),
        "recall_hem": recall_hem,
        "f1_hem": f1_hem,
        "specificity": recall_hem,
        "weighted_f1": (n_all * f1_all + n_hem * f1_hem) / n,
        "cohen_kappa": (accuracy - chance_agreement) / (1 - chance_agreement),
    }


def _weighted_auc(pos_scores, neg_scores, pos_weights, neg_weights) -> np.ndarray:
    """Mann-Whitney AUC (ties count 1/2) per resample; a weight row holds how often each image was
    drawn, so it sums to the class size."""
    order = np.argsort(neg_scores)
    sorted_neg = neg_scores[order]
    # Column k holds the drawn weight of the k lowest-scoring negatives.
    cumulative = np.pad(np.cumsum(neg_weights[:, order], axis=1), ((0, 0), (1, 0)))
    below = cumulative[:, np.searchsorted(sorted_neg, pos_scores, side="left")]
    below_or_tied = cumulative[:, np.searchsorted(sorted_neg, pos_scores, side="right")]
    pairs_won = (pos_weights * (below + below_or_tied) / 2).sum(axis=1)
    return pairs_won / (len(pos_scores) * len(neg_scores))


def _stratified_bootstrap(y_true, y_pred, p_all, n_bootstrap, rng) -> dict[str, np.ndarray]:
    """Every metric on ``n_bootstrap`` resamples drawn with replacement within each class."""
    positive = y_true == 1

    def draw_counts(n_cases):
        # Draw case indices per resample, then count draws per case; one flat bincount is
        # several times faster than rng.multinomial with the same distribution.
        drawn = rng.integers(0, n_cases, size=(n_bootstrap, n_cases))
        flat = (drawn + n_cases * np.arange(n_bootstrap)[:, np.newaxis]).ravel()
        return np.bincount(flat, minlength=n_bootstrap * n_cases).reshape(n_bootstrap, n_cases)

    n_pos, n_neg = positive.sum(), (~positive).sum()
    pos_weights, neg_weights = draw_counts(n_pos), draw_counts(n_neg)
    tp = pos_weights @ y_pred[positive]
    fp = neg_weights @ y_pred[~positive]
    samples = metrics_from_counts(tp, fp, n_neg - fp, n_pos - tp)
    samples["roc_auc"] = _weighted_auc(p_all[positive], p_all[~positive], pos_weights, neg_weights)
    return samples


def _youden_threshold(y_true, p_all) -> float:
    fpr, tpr, thresholds = roc_curve(y_true, p_all)
    # Skip the first point: roc_curve's threshold there is +inf (nothing called ALL).
    best = 1 + np.argmax((tpr - fpr)[1:])
    return float(thresholds[best])


def classification_metrics(y_true, p_all, threshold=0.5, n_bootstrap=2000, seed=0, confidence=0.95) -> dict:
    """Metrics of ``p_all`` (probability of ALL) against ``y_true`` (1/True = ALL) as a JSON-ready dict.

    An image is called ALL when ``p_all >= threshold``. Each metric carries a stratified percentile
    bootstrap interval; ``roc_auc_delong`` carries DeLong's normal-approximation interval instead.
    """
    y_true = np.asarray(y_true)
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must be binary: 1/True for ALL, 0/False for HEM")
    y_true = y_true.astype(int)
    p_all = np.asarray(p_all, dtype=float)
    n_all, n_hem = int(y_true.sum()), int((1 - y_true).sum())
    if n_all == 0 or n_hem == 0:
        raise UserError(
            f"Metrics need test images of both classes, but there are {n_all} ALL and {n_hem} HEM; "
            "check the test split and the labels in the prediction file."
        )
    y_pred = called_all(p_all, threshold)

    point = _point_estimates(y_true, y_pred, p_all)
    samples = _stratified_bootstrap(y_true, y_pred, p_all, n_bootstrap, np.random.default_rng(seed))
    tail = 100 * (1 - confidence) / 2
    result = {
        name: {
            "value": float(value),
            "ci_low": float(np.percentile(samples[name], tail)),
            "ci_high": float(np.percentile(samples[name], 100 - tail)),
        }
        for name, value in point.items()
    }

    auc, variance = delong_auc_variance(y_true, p_all)
    half_width = norm.ppf(1 - (1 - confidence) / 2) * np.sqrt(variance)
    result["roc_auc_delong"] = {
        "value": auc,
        "ci_low": float(max(0.0, auc - half_width)),
        "ci_high": float(min(1.0, auc + half_width)),
    }
    tn, fp, fn, tp = (int(count) for count in confusion_counts(y_true, p_all, threshold).ravel())
    result.update(
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        support={POSITIVE_CLASS: n_all, NEGATIVE_CLASS: n_hem},
        youden_threshold=_youden_threshold(y_true, p_all),
        n_bootstrap=int(n_bootstrap),
        threshold=float(threshold),
        confidence=float(confidence),
    )
    return result


def evaluate_prediction_file(path, threshold: float, n_bootstrap: int, seed: int, confidence: float) -> dict:
    """:func:`classification_metrics` of one prediction table (``result_files.read_predictions``), calling ALL
    from its ``p_all`` at ``threshold``; its ``pred`` column (the model's argmax) is not used."""
    predictions = read_predictions(path)
    return classification_metrics(
        is_all(predictions),
        predictions["p_all"],
        threshold=threshold,
        n_bootstrap=n_bootstrap,
        seed=seed,
        confidence=confidence,
    )
