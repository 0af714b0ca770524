"""Test-set metrics for ALL (positive) vs HEM with stratified bootstrap and DeLong confidence intervals.

Every thresholded number of a run (these metrics, the confusion figures, McNemar and agreement) calls an
image ALL through :func:`called_all` at the configured ``statistics.threshold``. The ``pred`` column of a
prediction table is the model's own argmax decision (ALL when p_all >= 0.5, whatever is configured) and is
never read as the decision here.

Each interval comes twice: ``ci_low``/``ci_high`` resample images, ``subject_ci_low``/``subject_ci_high``
resample subjects. C-NMC images come in clusters of one subject (dozens to hundreds of cells), so where the
subject is the unit of independence (subject-disjoint test sets, the external set) only the second is honest.
With fewer subjects of a class than the caller's minimum (the workflow's statistics.min_subjects_per_class) the
subject bounds are null.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
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

from leukemia_dtl.core.decisions import called_all
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import NEGATIVE_CLASS, POSITIVE_CLASS
from leukemia_dtl.evaluate.delong import delong_auc_variance
from leukemia_dtl.evaluate.result_files import is_all, read_predictions

# The two resampling units, as the prefixes of their interval keys.
IMAGE_INTERVAL = "ci"
SUBJECT_INTERVAL = "subject_ci"
# With one subject in a class every resample draws that subject: an interval of width 0 that would claim
# certainty where nothing can be said. So two subjects of each class are the least any subject interval needs;
# the workflow asks for more (statistics.min_subjects_per_class), as a percentile bootstrap over 2-4 subjects of
# a class under-covers.
MIN_SUBJECTS_FOR_INTERVAL = 2
AUC_METRICS = ("roc_auc", "roc_auc_delong")


def confusion_counts(y_true, p_all, threshold: float) -> np.ndarray:
    """scikit-learn's confusion matrix of the calls at ``threshold``: rows the truth, columns the call,
    each HEM (0) then ALL (1), so ``.ravel()`` gives tn, fp, fn, tp."""
    return confusion_matrix(y_true, called_all(p_all, threshold), labels=[0, 1])


def _thresholded_point_estimates(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The reported metrics that depend on the calls, computed by scikit-learn."""
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
        "cohen_kappa": cohen_kappa_score(y_true, y_pred),
    }


def metrics_from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """The thresholded metrics of ``_thresholded_point_estimates`` from confusion counts, elementwise over
    resamples."""
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
    """Mann-Whitney AUC (ties count 1/2) per resample; a weight row holds how often each image was drawn.
    Drawing subjects leaves a resample's class sizes to chance, so each row is normalised by its own totals."""
    order = np.argsort(neg_scores)
    sorted_neg = neg_scores[order]
    # Column k holds the drawn weight of the k lowest-scoring negatives.
    cumulative = np.pad(np.cumsum(neg_weights[:, order], axis=1), ((0, 0), (1, 0)))
    below = cumulative[:, np.searchsorted(sorted_neg, pos_scores, side="left")]
    below_or_tied = cumulative[:, np.searchsorted(sorted_neg, pos_scores, side="right")]
    pairs_won = (pos_weights * (below + below_or_tied) / 2).sum(axis=1)
    return pairs_won / (pos_weights.sum(axis=1) * neg_weights.sum(axis=1))


def subject_is_all(all_share) -> np.ndarray:
    """A subject's class from the share of its images labelled ALL: 1 (ALL) when at least half are, so a subject
    with images of both labels goes by its majority, ties to ALL."""
    return (np.asarray(all_share, dtype=float) >= 0.5).astype(int)


def resampling_units(units, y_true) -> tuple[np.ndarray, np.ndarray]:
    """Each image's unit (0, 1, ... in order of first appearance) and each unit's class (:func:`subject_is_all`)."""
    codes, _ = pd.factorize(np.asarray(units), use_na_sentinel=False)
    return codes, subject_is_all(np.bincount(codes, weights=y_true) / np.bincount(codes))


def _draw_counts(n_cases: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n_cases`` is drawn in each resample of ``n_cases`` draws with replacement."""
    # Draw case indices per resample, then count draws per case; one flat bincount is
    # several times faster than rng.multinomial with the same distribution.
    drawn = rng.integers(0, n_cases, size=(n_bootstrap, n_cases))
    flat = (drawn + n_cases * np.arange(n_bootstrap)[:, np.newaxis]).ravel()
    return np.bincount(flat, minlength=n_bootstrap * n_cases).reshape(n_bootstrap, n_cases)


def bootstrap_weights(codes, unit_class, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """How often each image is drawn (n_bootstrap x n_images) when units are drawn with replacement within
    their class, the ALL units first, and every drawn unit brings all its images."""
    unit_weights = np.empty((n_bootstrap, len(unit_class)), dtype=np.int64)
    for unit_label in (1, 0):
        members = np.flatnonzero(unit_class == unit_label)
        unit_weights[:, members] = _draw_counts(len(members), n_bootstrap, rng)
    return unit_weights[:, codes]


def _resampled_thresholded(weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    positive = y_true == 1
    pos_weights, neg_weights = weights[:, positive], weights[:, ~positive]
    tp, fp = pos_weights @ y_pred[positive], neg_weights @ y_pred[~positive]
    return metrics_from_counts(tp, fp, neg_weights.sum(axis=1) - fp, pos_weights.sum(axis=1) - tp)


def _resampled_auc(weights: np.ndarray, y_true: np.ndarray, p_all: np.ndarray) -> np.ndarray:
    positive = y_true == 1
    return _weighted_auc(p_all[positive], p_all[~positive], weights[:, positive], weights[:, ~positive])


def metric_values(y_true, p_all, threshold: float) -> dict[str, float]:
    """Every thresholded metric at ``threshold`` and ROC-AUC: the ``value`` of each entry of
    :func:`classification_metrics` (its ``roc_auc_delong`` aside)."""
    y_true, p_all = _checked_labels(y_true, p_all)
    values = _thresholded_point_estimates(y_true, called_all(p_all, threshold))
    values["roc_auc"] = roc_auc_score(y_true, p_all)
    return {name: float(value) for name, value in values.items()}


def resampled_metrics(weights: np.ndarray, y_true, p_all, threshold: float) -> dict[str, np.ndarray]:
    """The metrics of :func:`metric_values` on each resample: one value per row of ``weights`` (n_resamples x
    n_images, how often each image was drawn, as :func:`bootstrap_weights` gives)."""
    y_true, p_all = _checked_labels(y_true, p_all)
    thresholded = _resampled_thresholded(weights, y_true, called_all(p_all, threshold))
    return thresholded | {"roc_auc": _resampled_auc(weights, y_true, p_all)}


def percentile_interval(samples: np.ndarray, confidence: float, prefix: str) -> dict[str, float]:
    """The percentile bootstrap interval of ``samples`` at ``confidence`` as {prefix_low, prefix_high}."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return {f"{prefix}_low": float(low), f"{prefix}_high": float(high)}


def _thresholded_entries(y_true, p_all, threshold, weights: Mapping[str, np.ndarray], confidence) -> dict:
    """Every thresholded metric at ``threshold`` with one interval per resampling unit in ``weights``."""
    y_pred = called_all(p_all, threshold)
    samples = {prefix: _resampled_thresholded(unit_weights, y_true, y_pred) for prefix, unit_weights in weights.items()}
    return {
        name: {"value": float(value)}
        | {
            key: bound
            for prefix in weights
            for key, bound in percentile_interval(samples[prefix][name], confidence, prefix).items()
        }
        for name, value in _thresholded_point_estimates(y_true, y_pred).items()
    }


def _counts(y_true, p_all, threshold) -> dict[str, int]:
    tn, fp, fn, tp = (int(count) for count in confusion_counts(y_true, p_all, threshold).ravel())
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def _auc_entries(y_true, p_all, weights: Mapping[str, np.ndarray], confidence) -> dict:
    """ROC-AUC with its bootstrap intervals, and again with DeLong's normal-approximation interval in place of
    the image bootstrap. DeLong's variance assumes independent images, so its subject interval is the
    subject bootstrap's."""
    intervals = {}
    for prefix, unit_weights in weights.items():
        intervals |= percentile_interval(_resampled_auc(unit_weights, y_true, p_all), confidence, prefix)
    auc, variance = delong_auc_variance(y_true, p_all)
    half_width = norm.ppf(1 - (1 - confidence) / 2) * np.sqrt(variance)
    delong = {"ci_low": float(max(0.0, auc - half_width)), "ci_high": float(min(1.0, auc + half_width))}
    return {
        "roc_auc": {"value": float(roc_auc_score(y_true, p_all))} | intervals,
        "roc_auc_delong": intervals | {"value": float(auc)} | delong,
    }


def _youden_threshold(y_true, p_all) -> float:
    """The threshold maximising TPR - FPR on these very labels: test-derived (on a test or external subset, chosen
    on the images it scores), so kept in the metrics file for reference only and never an operating point."""
    fpr, tpr, thresholds = roc_curve(y_true, p_all)
    # Skip the first point: roc_curve's threshold there is +inf (nothing called ALL).
    best = 1 + np.argmax((tpr - fpr)[1:])
    return float(thresholds[best])


def balanced_accuracy_threshold(y_true, p_all, preferred: float) -> float:
    """The threshold among the distinct ``p_all`` values whose calls (ALL when p_all >= it) score the highest
    balanced accuracy; of equal scorers the one closest to ``preferred``, the higher if two are as close."""
    y_true, p_all = _checked_labels(y_true, p_all)
    fpr, tpr, thresholds = roc_curve(y_true, p_all, drop_intermediate=False)
    # Balanced accuracy is (tpr + 1 - fpr) / 2; the first point's threshold is +inf (nothing called ALL).
    youden, candidates = (tpr - fpr)[1:], thresholds[1:]
    best = candidates[np.isclose(youden, youden.max(), rtol=0, atol=1e-12)]
    return float(best[np.argmin(np.abs(best - preferred))])


def _checked_labels(y_true, p_all) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must be binary: 1/True for ALL, 0/False for HEM")
    y_true = y_true.astype(int)
    n_all, n_hem = int(y_true.sum()), int((1 - y_true).sum())
    if n_all == 0 or n_hem == 0:
        raise UserError(
            f"Metrics need test images of both classes, but there are {n_all} ALL and {n_hem} HEM; "
            "check the test split and the labels in the prediction file."
        )
    return y_true, np.asarray(p_all, dtype=float)


def subject_support(unit_class: np.ndarray) -> dict[str, int]:
    """Subjects of each class ({"ALL": n, "HEM": n}) from each unit's class (:func:`resampling_units`); a
    UserError when a class has none."""
    support = {POSITIVE_CLASS: int(unit_class.sum()), NEGATIVE_CLASS: int((1 - unit_class).sum())}
    if 0 in support.values():
        raise UserError(
            f"Subject-level intervals need subjects of both classes, but the {len(unit_class)} subjects are "
            f"{support[POSITIVE_CLASS]} mostly ALL and {support[NEGATIVE_CLASS]} mostly HEM; check the subject "
            "column of the prediction file (each subject is an ALL patient or a healthy donor)."
        )
    return support


def allows_subject_interval(support: Mapping[str, int], min_subjects_per_class: int) -> bool:
    """Whether a subject-level interval is given: at least ``min_subjects_per_class`` subjects of each class."""
    return min(support.values()) >= min_subjects_per_class


def classification_metrics(
    y_true,
    p_all,
    subjects=None,
    threshold=0.5,
    n_bootstrap=2000,
    seed=0,
    confidence=0.95,
    validation_threshold: float | None = None,
    min_subjects_per_class: int = MIN_SUBJECTS_FOR_INTERVAL,
) -> dict:
    """Metrics of ``p_all`` (probability of ALL) against ``y_true`` (1/True = ALL) as a JSON-ready dict.

    An image is called ALL when ``p_all >= threshold``. Each metric carries two stratified percentile bootstrap
    intervals from the same number of resamples and the same seed: ``ci_*`` draws images within their class,
    ``subject_ci_*`` draws ``subjects`` (one ID per image; None: every image its own subject) within their
    class and takes all images of each; its bounds are null with fewer than ``min_subjects_per_class`` subjects
    of a class, a limit the result records beside ``subject_support``. ``roc_auc_delong`` carries DeLong's
    interval as its ``ci_*``. With a ``validation_threshold``, ``at_validation_threshold`` holds every
    thresholded metric again at it.
    """
    y_true, p_all = _checked_labels(y_true, p_all)
    images = np.arange(len(y_true))
    image_units = resampling_units(images, y_true)
    subject_units = resampling_units(images if subjects is None else subjects, y_true)
    support_of_subjects = subject_support(subject_units[1])
    resampled = {IMAGE_INTERVAL: image_units}
    if allows_subject_interval(support_of_subjects, min_subjects_per_class):
        resampled[SUBJECT_INTERVAL] = subject_units
    # One generator per unit from the same seed: with one image per subject both draw the same resamples.
    weights = {
        prefix: bootstrap_weights(*units, n_bootstrap, np.random.default_rng(seed))
        for prefix, units in resampled.items()
    }
    result = _thresholded_entries(y_true, p_all, threshold, weights, confidence)
    result |= _auc_entries(y_true, p_all, weights, confidence)
    result |= _counts(y_true, p_all, threshold)
    result.update(
        support={POSITIVE_CLASS: int(y_true.sum()), NEGATIVE_CLASS: int((1 - y_true).sum())},
        subject_support=support_of_subjects,
        min_subjects_per_class=int(min_subjects_per_class),
        youden_threshold=_youden_threshold(y_true, p_all),
        n_bootstrap=int(n_bootstrap),
        threshold=float(threshold),
        confidence=float(confidence),
    )
    if validation_threshold is not None:
        result["validation_threshold"] = float(validation_threshold)
        result["at_validation_threshold"] = (
            _thresholded_entries(y_true, p_all, validation_threshold, weights, confidence)
            | _counts(y_true, p_all, validation_threshold)
            | {"threshold": float(validation_threshold)}
        )
    if SUBJECT_INTERVAL not in weights:
        for entries in (result, result.get("at_validation_threshold", {})):
            for entry in entries.values():
                if isinstance(entry, dict) and "value" in entry:
                    entry |= {f"{SUBJECT_INTERVAL}_low": None, f"{SUBJECT_INTERVAL}_high": None}
    return result


def evaluate_prediction_file(
    path,
    threshold: float,
    n_bootstrap: int,
    seed: int,
    confidence: float,
    validation_threshold: float | None = None,
    min_subjects_per_class: int = MIN_SUBJECTS_FOR_INTERVAL,
) -> dict:
    """:func:`classification_metrics` of one prediction table (``result_files.read_predictions``), calling ALL
    from its ``p_all`` at ``threshold``, resampling subjects by its ``subject`` column; its ``pred`` column
    (the model's argmax) is not used."""
    predictions = read_predictions(path)
    return classification_metrics(
        is_all(predictions),
        predictions["p_all"],
        subjects=predictions["subject"],
        threshold=threshold,
        n_bootstrap=n_bootstrap,
        seed=seed,
        confidence=confidence,
        validation_threshold=validation_threshold,
        min_subjects_per_class=min_subjects_per_class,
    )


def evaluate_prediction_set(
    prediction_files: Mapping[str, str | os.PathLike],
    threshold: float,
    n_bootstrap: int,
    seed: int,
    confidence: float,
    min_subjects_per_class: int = MIN_SUBJECTS_FOR_INTERVAL,
) -> dict[str, dict]:
    """:func:`evaluate_prediction_file` of each subset's file of one prediction set (keys: subsets, ``val``
    among them), each also scored at the threshold that maximises balanced accuracy on the set's ``val``
    predictions (:func:`balanced_accuracy_threshold`, ties going to the one closest to ``threshold``)."""
    if "val" not in prediction_files:
        raise UserError(
            f"The validation threshold is chosen on the val predictions, but the prediction set has only "
            f"{', '.join(prediction_files)}; predict the val subset too."
        )
    val = read_predictions(prediction_files["val"])
    chosen = balanced_accuracy_threshold(is_all(val), val["p_all"], preferred=threshold)
    return {
        subset: evaluate_prediction_file(
            path, threshold, n_bootstrap, seed, confidence, chosen, min_subjects_per_class=min_subjects_per_class
        )
        for subset, path in prediction_files.items()
    }
