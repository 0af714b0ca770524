import json

import numpy as np
import pytest
from scipy.stats import binom, norm
from sklearn.metrics import roc_auc_score

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.evaluate.delong import delong_auc_variance
from leukemia_dtl.evaluate.metrics import _weighted_auc, classification_metrics, metrics_from_counts

INTERVAL_METRICS = [
    "accuracy",
    "balanced_accuracy",
    "precision_all",
    "recall_all",
    "f1_all",
    "precision_hem",
    "recall_hem",
    "f1_hem",
    "specificity",
    "weighted_f1",
    "roc_auc",
    "cohen_kappa",
    "roc_auc_delong",
]


def _simulated(n, seed=0):
    """About 68 % ALL, as in C-NMC 2019; informative but imperfect probabilities."""
    rng = np.random.default_rng(seed)
    y_true = (rng.random(n) < 0.68).astype(int)
    return y_true, np.clip(rng.normal(0.35 + 0.3 * y_true, 0.2), 0, 1)


def test_hand_worked_example():
    """Truth ALL ALL ALL HEM HEM, p_all .9 .6 .4 .7 .2 -> called ALL ALL HEM ALL HEM.

    tp=2 fn=1 fp=1 tn=1. Kappa: p_o = 3/5, p_e = (3*3 + 2*2)/25 = 13/25 -> (15-13)/(25-13) = 1/6.
    AUC: of the 6 ALL/HEM pairs, ALL scores higher in 4. Youden: at 0.4, TPR 1 - FPR 1/2 is the max.
    """
    result = classification_metrics([1, 1, 1, 0, 0], [0.9, 0.6, 0.4, 0.7, 0.2], n_bootstrap=50)
    expected = {
        "accuracy": 3 / 5,
        "balanced_accuracy": (2 / 3 + 1 / 2) / 2,
        "precision_all": 2 / 3,
        "recall_all": 2 / 3,
        "f1_all": 2 / 3,
        "precision_hem": 1 / 2,
        "recall_hem": 1 / 2,
        "f1_hem": 1 / 2,
        "specificity": 1 / 2,
        "weighted_f1": (3 * 2 / 3 + 2 * 1 / 2) / 5,
        "roc_auc": 4 / 6,
        "cohen_kappa": 1 / 6,
        "roc_auc_delong": 4 / 6,
    }
    assert {name: result[name]["value"] for name in expected} == pytest.approx(expected)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (2, 1, 1, 1)
    assert result["support"] == {"ALL": 3, "HEM": 2}
    assert result["youden_threshold"] == pytest.approx(0.4)
    assert (result["n_bootstrap"], result["threshold"], result["confidence"]) == (50, 0.5, 0.95)


def test_threshold_is_inclusive_and_configurable():
    result = classification_metrics([1, 0, 1, 0], [0.7, 0.7, 0.9, 0.1], threshold=0.7, n_bootstrap=10)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (2, 1, 1, 0)


def test_count_formulas_reproduce_scikit_learn():
    y_true, p_all = _simulated(500)
    result = classification_metrics(y_true, p_all, n_bootstrap=10)
    from_counts = metrics_from_counts(result["tp"], result["fp"], result["tn"], result["fn"])
    assert set(from_counts) == set(INTERVAL_METRICS) - {"roc_auc", "roc_auc_delong"}
    for name, value in from_counts.items():
        assert value == pytest.approx(result[name]["value"]), name


def test_resample_auc_equals_scikit_learn_with_draw_counts_as_weights():
    rng = np.random.default_rng(5)
    pos, neg = np.round(rng.normal(1, 1, 40), 1), np.round(rng.normal(0, 1, 30), 1)
    # Times each image was drawn in 4 bootstrap resamples.
    pos_draws = rng.multinomial(40, np.full(40, 1 / 40), size=4)
    neg_draws = rng.multinomial(30, np.full(30, 1 / 30), size=4)
    aucs = _weighted_auc(pos, neg, pos_draws, neg_draws)
    y_true = np.r_[np.ones(40), np.zeros(30)]
    for row, auc in enumerate(aucs):
        weights = np.r_[pos_draws[row], neg_draws[row]]
        assert auc == pytest.approx(roc_auc_score(y_true, np.r_[pos, neg], sample_weight=weights))


def test_intervals_contain_estimate():
    result = classification_metrics(*_simulated(400), n_bootstrap=500)
    for name in INTERVAL_METRICS:
        assert result[name]["ci_low"] <= result[name]["value"] <= result[name]["ci_high"], name
        assert result[name]["ci_low"] < result[name]["ci_high"], name


def test_intervals_shrink_as_sample_grows():
    def width(result, name):
        return result[name]["ci_high"] - result[name]["ci_low"]

    small = classification_metrics(*_simulated(200, seed=1), n_bootstrap=500)
    large = classification_metrics(*_simulated(3200, seed=1), n_bootstrap=500)
    # Sixteen times the images: about a quarter of the width.
    for name in ("accuracy", "f1_hem", "roc_auc", "cohen_kappa"):
        assert width(large, name) < width(small, name) / 2.5, name


def test_bootstrap_is_stratified():
    """A model calling everything ALL has precision n_ALL / n in every resample when class sizes
    are kept; a plain bootstrap would vary it."""
    y_true = np.r_[np.ones(70, int), np.zeros(30, int)]
    result = classification_metrics(y_true, np.full(100, 0.9), n_bootstrap=200)
    assert result["precision_all"] == {"value": 0.7, "ci_low": 0.7, "ci_high": 0.7}


def test_recall_interval_follows_binomial_quantiles():
    """Resampling 1000 ALL images of which 800 are caught gives tp ~ Binomial(1000, 0.8) exactly,
    so the 50 % interval of recall_all is its quartiles: 800 -+ 0.674 * sqrt(160), about 0.792-0.809."""
    y_true = np.r_[np.ones(1000, int), np.zeros(500, int)]
    p_all = np.r_[np.full(800, 0.9), np.full(200, 0.1), np.full(500, 0.2)]
    result = classification_metrics(y_true, p_all, n_bootstrap=2000, confidence=0.5)
    quartiles = binom.ppf([0.25, 0.75], 1000, 0.8) / 1000
    assert [result["recall_all"]["ci_low"], result["recall_all"]["ci_high"]] == pytest.approx(quartiles, abs=0.002)


def test_bootstrap_auc_interval_agrees_with_delong():
    result = classification_metrics(*_simulated(1600), n_bootstrap=2000)
    for bound in ("ci_low", "ci_high"):
        assert result["roc_auc"][bound] == pytest.approx(result["roc_auc_delong"][bound], abs=0.005)


def test_delong_interval_uses_delong_variance():
    y_true, p_all = _simulated(300)
    result = classification_metrics(y_true, p_all, n_bootstrap=10, confidence=0.9)
    auc, variance = delong_auc_variance(y_true, p_all)
    half_width = norm.ppf(0.95) * np.sqrt(variance)
    assert result["roc_auc_delong"] == pytest.approx(
        {"value": auc, "ci_low": auc - half_width, "ci_high": auc + half_width}
    )


def test_seeded_and_json_ready():
    y_true, p_all = _simulated(300)
    first = classification_metrics(y_true, p_all, n_bootstrap=200, seed=4)
    assert first == classification_metrics(y_true, p_all, n_bootstrap=200, seed=4)
    assert first != classification_metrics(y_true, p_all, n_bootstrap=200, seed=5)
    assert json.loads(json.dumps(first, allow_nan=False)) == first


def test_rejects_labels_that_are_not_binary():
    with pytest.raises(ValueError, match="binary"):
        classification_metrics(["ALL", "HEM"], [0.9, 0.1])


def test_single_class_is_a_user_error():
    with pytest.raises(UserError, match="3 ALL and 0 HEM"):
        classification_metrics([1, 1, 1], [0.9, 0.8, 0.2])
