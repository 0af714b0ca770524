import json

import numpy as np
import pytest
from scipy.stats import binom, norm
from sklearn.metrics import roc_auc_score

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.evaluate.delong import delong_auc_variance
from leukemia_dtl.evaluate.metrics import (
    _weighted_auc,
    balanced_accuracy_threshold,
    classification_metrics,
    evaluate_prediction_set,
    metrics_from_counts,
    resampling_units,
)
from leukemia_dtl.evaluate.result_files import read_metrics
from rule_scripts import run_rule_script

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
THRESHOLDED_METRICS = [name for name in INTERVAL_METRICS if not name.startswith("roc_auc")]
INTERVAL_KEYS = ["ci_low", "ci_high", "subject_ci_low", "subject_ci_high"]


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
    assert result["precision_all"] == dict.fromkeys(["value", *INTERVAL_KEYS], 0.7)


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
    delong = {name: result["roc_auc_delong"][name] for name in ("value", "ci_low", "ci_high")}
    assert delong == pytest.approx({"value": auc, "ci_low": auc - half_width, "ci_high": auc + half_width})


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


def _clustered(n_subjects, images_per_subject, seed=0):
    """Subjects of about 68 % ALL patients whose images share a subject-level offset in p_all: the images of
    one subject are alike, as cells of one patient are."""
    rng = np.random.default_rng(seed)
    subject_is_all = (rng.random(n_subjects) < 0.68).astype(int)
    subject_offset = rng.normal(0, 0.2, n_subjects)
    subjects = np.repeat(np.arange(n_subjects), images_per_subject)
    y_true = subject_is_all[subjects]
    noise = rng.normal(0, 0.05, len(subjects))
    return y_true, np.clip(0.35 + 0.3 * y_true + subject_offset[subjects] + noise, 0, 1), subjects


def _interval(result, name, prefix):
    return result[name][f"{prefix}_low"], result[name][f"{prefix}_high"]


def test_subject_bootstrap_of_identical_images_equals_a_bootstrap_of_one_row_per_subject():
    """Four identical images per subject: every resampled count is four times the one-row-per-subject count,
    so with the same draws every metric and AUC is the same number. Four, a power of two, keeps the float
    arithmetic exact, so the intervals must agree to the last bit."""
    rng = np.random.default_rng(3)
    subject_is_all = np.r_[np.ones(25, int), np.zeros(15, int)]
    rng.shuffle(subject_is_all)
    subject_p_all = np.round(np.clip(rng.normal(0.4 + 0.25 * subject_is_all, 0.2), 0, 1), 2)
    per_subject = classification_metrics(subject_is_all, subject_p_all, n_bootstrap=300, seed=7)
    clustered = classification_metrics(
        np.repeat(subject_is_all, 4),
        np.repeat(subject_p_all, 4),
        subjects=np.repeat([f"UID_{index}" for index in range(40)], 4),
        n_bootstrap=300,
        seed=7,
    )
    assert clustered["subject_support"] == {"ALL": 25, "HEM": 15}
    assert clustered["support"] == {"ALL": 100, "HEM": 60}
    for name in [*THRESHOLDED_METRICS, "roc_auc"]:
        assert _interval(clustered, name, "subject_ci") == _interval(per_subject, name, "ci"), name
        assert clustered[name]["value"] == pytest.approx(per_subject[name]["value"]), name
    # DeLong's own interval treats the 160 images as independent; its subject interval is the bootstrap's.
    assert _interval(clustered, "roc_auc_delong", "subject_ci") == _interval(per_subject, "roc_auc", "ci")


def test_subject_interval_is_wider_than_image_interval_on_clustered_data():
    y_true, p_all, subjects = _clustered(40, 50)
    result = classification_metrics(y_true, p_all, subjects=subjects, n_bootstrap=1000)
    for name in ("accuracy", "balanced_accuracy", "f1_hem", "roc_auc", "roc_auc_delong", "cohen_kappa"):
        image_low, image_high = _interval(result, name, "ci")
        subject_low, subject_high = _interval(result, name, "subject_ci")
        # 40 independent subjects carry far less information than 2000 independent images would.
        assert subject_high - subject_low > 2 * (image_high - image_low), name
        assert subject_low <= result[name]["value"] <= subject_high, name


def test_subject_interval_equals_image_interval_with_one_image_per_subject():
    y_true, p_all = _simulated(300)
    result = classification_metrics(y_true, p_all, subjects=[f"s{index}" for index in range(300)], n_bootstrap=400)
    for name in INTERVAL_METRICS:
        if name != "roc_auc_delong":
            assert _interval(result, name, "subject_ci") == _interval(result, name, "ci"), name
    assert result == classification_metrics(y_true, p_all, n_bootstrap=400)


def test_one_subject_in_a_class_leaves_the_subject_interval_undefined_not_zero_wide():
    # Two ALL subjects but one HEM subject: every resample would redraw that HEM subject, so a subject interval
    # would look certain. The bounds are null; the image intervals are unaffected.
    y_true, p_all, subjects = _clustered(3, 20, seed=3)
    y_true = np.repeat([1, 1, 0], 20)
    result = classification_metrics(y_true, p_all, subjects=subjects, n_bootstrap=300, validation_threshold=0.5)
    assert result["subject_support"] == {"ALL": 2, "HEM": 1}
    for entries in (result, result["at_validation_threshold"]):
        for name, entry in entries.items():
            if isinstance(entry, dict) and "value" in entry:
                assert entry["subject_ci_low"] is None and entry["subject_ci_high"] is None, name
                assert entry["ci_low"] <= entry["ci_high"], name
    two_each = classification_metrics(
        np.repeat([1, 1, 0, 0], 20), np.tile(p_all[:20], 4), subjects=np.repeat(np.arange(4), 20), n_bootstrap=300
    )
    assert two_each["roc_auc"]["subject_ci_low"] is not None


def test_fewer_subjects_of_a_class_than_the_minimum_leave_the_subject_interval_null_and_say_so():
    """Four ALL patients and three HEM donors: a subject interval at a minimum of 3 subjects per class, none at 5
    (a percentile bootstrap over so few subjects under-covers); the minimum is recorded beside the support."""
    y_true = np.repeat([1, 1, 1, 1, 0, 0, 0], 10)
    _, p_all, subjects = _clustered(7, 10, seed=5)
    settings = {"subjects": subjects, "n_bootstrap": 200, "validation_threshold": 0.4}
    strict = classification_metrics(y_true, p_all, min_subjects_per_class=5, **settings)
    assert (strict["subject_support"], strict["min_subjects_per_class"]) == ({"ALL": 4, "HEM": 3}, 5)
    for entries in (strict, strict["at_validation_threshold"]):
        for name, entry in entries.items():
            if isinstance(entry, dict) and "value" in entry:
                assert entry["subject_ci_low"] is None and entry["subject_ci_high"] is None, name
                assert entry["ci_low"] <= entry["ci_high"], name
    lenient = classification_metrics(y_true, p_all, min_subjects_per_class=3, **settings)
    assert lenient["min_subjects_per_class"] == 3
    assert lenient["roc_auc"]["subject_ci_low"] is not None
    assert lenient["at_validation_threshold"]["accuracy"]["subject_ci_high"] is not None


def test_the_rule_passes_the_configured_minimum_on_to_every_metrics_file(tmp_path):
    """statistics.min_subjects_per_class reaches evaluate_predictions through its statistics param: test (two HEM
    donors) gets no subject interval at a minimum of 3, val (three of each class) does."""
    val_subjects = list("aabbccddeeff")
    files = {
        "val": _prediction_file(tmp_path / "val.tsv", [1] * 6 + [0] * 6, np.linspace(0.2, 0.9, 12), val_subjects),
        "test": _prediction_file(tmp_path / "test.tsv", [1] * 6 + [0] * 4, np.linspace(0.1, 0.9, 10), "aabbccddee"),
    }
    outputs = {subset: tmp_path / "metrics" / f"{subset}.json" for subset in files}
    statistics = {"threshold": 0.5, "bootstrap_resamples": 50, "seed": 0, "confidence": 0.95}
    run_rule_script(
        "evaluate_predictions.py",
        input={subset: str(path) for subset, path in files.items()},
        output={subset: str(path) for subset, path in outputs.items()},
        params={"statistics": statistics | {"mcnemar_exact_below": 25, "min_subjects_per_class": 3}},
    )
    # As every reader of metrics files reads them, checked (format version included).
    written = {subset: read_metrics(path) for subset, path in outputs.items()}
    assert {subset: metrics["min_subjects_per_class"] for subset, metrics in written.items()} == {"val": 3, "test": 3}
    assert written["test"]["subject_support"] == {"ALL": 3, "HEM": 2}
    assert written["test"]["accuracy"]["subject_ci_low"] is None
    assert written["val"]["accuracy"]["subject_ci_low"] is not None


def test_a_subject_with_both_labels_goes_by_its_majority_and_a_tie_goes_to_all():
    codes, unit_class = resampling_units(
        ["b", "b", "b", "a", "a", "c", "c", "d"],
        np.array([0, 0, 1, 1, 0, 1, 1, 0]),
    )
    assert codes.tolist() == [0, 0, 0, 1, 1, 2, 2, 3]
    assert unit_class.tolist() == [0, 1, 1, 0]


def test_subject_draws_take_whole_subjects_within_their_class():
    """Two ALL patients, one with 1 and one with 9 images, all called ALL, and two HEM donors of 5 images, all
    called HEM but one: per resample recall_all is 1, and specificity is 1 or 0.8 or 0.9 only as whole donors
    are drawn (0 + 0, 1 + 1, 0 + 1 of the miscalled donor's)."""
    subjects = ["p1"] + ["p2"] * 9 + ["d1"] * 5 + ["d2"] * 5
    y_true = np.r_[np.ones(10, int), np.zeros(10, int)]
    p_all = np.r_[np.full(10, 0.9), np.full(5, 0.1), 0.9, np.full(4, 0.1)]
    result = classification_metrics(y_true, p_all, subjects=subjects, n_bootstrap=400, confidence=0.99)
    assert result["subject_support"] == {"ALL": 2, "HEM": 2}
    assert _interval(result, "recall_all", "subject_ci") == (1.0, 1.0)
    assert _interval(result, "specificity", "subject_ci") == pytest.approx((0.8, 1.0))


def test_resample_auc_is_normalised_by_the_drawn_totals():
    """Subject draws leave each class's drawn total to chance; the AUC still equals scikit-learn's weighted one."""
    rng = np.random.default_rng(2)
    pos, neg = np.round(rng.normal(1, 1, 12), 1), np.round(rng.normal(0, 1, 9), 1)
    pos_draws, neg_draws = rng.integers(0, 4, size=(3, 12)), rng.integers(1, 7, size=(3, 9))
    y_true = np.r_[np.ones(12), np.zeros(9)]
    for row, auc in enumerate(_weighted_auc(pos, neg, pos_draws, neg_draws)):
        weights = np.r_[pos_draws[row], neg_draws[row]]
        assert auc == pytest.approx(roc_auc_score(y_true, np.r_[pos, neg], sample_weight=weights))


def test_single_class_of_subjects_is_a_user_error():
    with pytest.raises(UserError, match="2 mostly ALL and 0 mostly HEM"):
        classification_metrics([1, 1, 0, 1], [0.9, 0.8, 0.2, 0.7], subjects=["a", "a", "a", "b"])


def test_balanced_accuracy_threshold_by_hand():
    """Truth ALL ALL HEM ALL HEM HEM at p 7/8 6/8 5/8 4/8 2/8 1/8 (exact in binary). Calling ALL from 4/8 catches
    every ALL and one HEM, from 6/8 two of three ALL and no HEM: both score balanced accuracy 5/6, the best, so
    the one closer to the preferred threshold wins."""
    y_true, p_all = [1, 1, 0, 1, 0, 0], [0.875, 0.75, 0.625, 0.5, 0.25, 0.125]
    assert balanced_accuracy_threshold(y_true, p_all, preferred=0.5) == 0.5
    assert balanced_accuracy_threshold(y_true, p_all, preferred=0.7) == 0.75
    # Equally close: the higher.
    assert balanced_accuracy_threshold(y_true, p_all, preferred=0.625) == 0.75
    assert balanced_accuracy_threshold([1, 0, 1, 0], [0.9, 0.4, 0.35, 0.1], preferred=0.5) == 0.35


def test_metrics_at_validation_threshold_equal_metrics_scored_at_it():
    y_true, p_all, subjects = _clustered(30, 10, seed=4)
    result = classification_metrics(y_true, p_all, subjects=subjects, n_bootstrap=200, validation_threshold=0.45)
    at_it = classification_metrics(y_true, p_all, subjects=subjects, threshold=0.45, n_bootstrap=200)
    assert result["validation_threshold"] == 0.45
    assert result["at_validation_threshold"] == {name: at_it[name] for name in THRESHOLDED_METRICS} | {
        "tp": at_it["tp"],
        "fp": at_it["fp"],
        "tn": at_it["tn"],
        "fn": at_it["fn"],
        "threshold": 0.45,
    }
    assert {name: result[name] for name in INTERVAL_METRICS} != {name: at_it[name] for name in INTERVAL_METRICS}
    assert result["roc_auc"] == at_it["roc_auc"]


def _prediction_file(path, y_true, p_all, subjects):
    rows = [
        f"img_{index}.bmp\t{subject}\t{'ALL' if label else 'HEM'}\t{p}\t{'ALL' if p >= 0.5 else 'HEM'}"
        for index, (label, p, subject) in enumerate(zip(y_true, p_all, subjects, strict=True))
    ]
    path.write_text("\n".join(["path\tsubject\tlabel\tp_all\tpred", *rows]) + "\n")
    return path


def test_every_subset_of_a_prediction_set_is_scored_at_the_threshold_chosen_on_val(tmp_path):
    """The val predictions separate the classes best from 0.3; the test file has its own best threshold (0.8),
    which must not be used."""
    files = {
        "val": _prediction_file(tmp_path / "val.tsv", [1, 1, 0, 1, 0, 0], [0.9, 0.3, 0.2, 0.4, 0.25, 0.1], "aabcde"),
        "test": _prediction_file(tmp_path / "test.tsv", [1, 1, 0, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.3], "aabcc"),
    }
    metrics = evaluate_prediction_set(files, threshold=0.5, n_bootstrap=50, seed=0, confidence=0.95)
    assert {subset: result["validation_threshold"] for subset, result in metrics.items()} == {"val": 0.3, "test": 0.3}
    at_val = metrics["test"]["at_validation_threshold"]
    assert (at_val["tp"], at_val["fp"], at_val["tn"], at_val["fn"], at_val["threshold"]) == (2, 3, 0, 0, 0.3)
    assert metrics["test"]["subject_support"] == {"ALL": 1, "HEM": 2}
    assert (metrics["test"]["tp"], metrics["test"]["fp"]) == (2, 2)
