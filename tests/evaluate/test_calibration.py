import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from leukemia_dtl.evaluate.calibration import brier_score, expected_calibration_error, reliability_curve

# Three occupied bins of width 0.1:
# (0, .1]:  p .05 .08     (mean .065), truth HEM ALL     (freq .5) -> gap .435, 2 images
# (.4, .5]: p .42 .48     (mean .45),  truth ALL HEM     (freq .5) -> gap .05,  2 images
# (.9, 1]:  p .91 .95 .99 (mean .95),  truth ALL ALL ALL (freq 1)  -> gap .05,  3 images
Y = [0, 1, 1, 0, 1, 1, 1]
P = [0.05, 0.08, 0.42, 0.48, 0.91, 0.95, 0.99]


def test_ece_hand_worked():
    assert expected_calibration_error(Y, P) == pytest.approx((2 * 0.435 + 2 * 0.05 + 3 * 0.05) / 7)


def test_reliability_curve_hand_worked():
    curve = reliability_curve(Y, P)
    assert curve["bin_center"].tolist() == pytest.approx(np.arange(0.05, 1, 0.1))
    assert curve["count"].tolist() == [2, 0, 0, 0, 2, 0, 0, 0, 0, 3]
    occupied = curve[curve["count"] > 0]
    assert occupied["mean_predicted"].tolist() == pytest.approx([0.065, 0.45, 0.95])
    assert occupied["observed_frequency"].tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert curve.loc[curve["count"] == 0, "observed_frequency"].isna().all()


def test_reliability_curve_matches_scikit_learn_binning():
    rng = np.random.default_rng(2)
    # Bin edges themselves included: an image on an edge belongs to the lower bin, as in scikit-learn.
    p = np.r_[rng.random(500), np.linspace(0, 1, 11)]
    y = (rng.random(len(p)) < p).astype(int)
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    occupied = reliability_curve(y, p).query("count > 0")
    assert occupied["observed_frequency"].to_numpy() == pytest.approx(observed)
    assert occupied["mean_predicted"].to_numpy() == pytest.approx(predicted)
    assert occupied["count"].sum() == len(p)


def test_ece_zero_when_probability_equals_base_rate():
    assert expected_calibration_error([1, 0, 0, 0], [0.25] * 4) == pytest.approx(0.0)


def test_ece_of_confident_wrong_model_is_large():
    assert expected_calibration_error([0, 0, 1, 1], [1.0, 1.0, 0.0, 0.0]) == pytest.approx(1.0)


def test_brier_hand_worked():
    assert brier_score([1, 0], [0.8, 0.4]) == pytest.approx((0.2**2 + 0.4**2) / 2)
