"""Calibration of the predicted probability of ALL: reliability curve, ECE and Brier score.

``y`` is 1/True for ALL; ``p`` is the predicted probability of ALL.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss

# The equal-width bins of p_all that the reliability diagram and the model cards' ECE both use.
CALIBRATION_BINS = 10


def reliability_curve(y, p, n_bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Per equal-width bin of ``p``: bin_center, mean_predicted, observed_frequency (of ALL), count.

    Bins are (lo, hi] with the first bin also holding 0, as in sklearn's ``calibration_curve``;
    empty bins are kept with NaN means so curves of different models share rows.
    """
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of = np.searchsorted(edges[1:-1], p)
    count = np.bincount(bin_of, minlength=n_bins)
    with np.errstate(invalid="ignore"):  # empty bins: 0/0 -> NaN on purpose
        mean_predicted = np.bincount(bin_of, weights=p, minlength=n_bins) / count
        observed_frequency = np.bincount(bin_of, weights=y, minlength=n_bins) / count
    return pd.DataFrame(
        {
            "bin_center": (edges[:-1] + edges[1:]) / 2,
            "mean_predicted": mean_predicted,
            "observed_frequency": observed_frequency,
            "count": count,
        }
    )


def expected_calibration_error(y, p, n_bins: int = CALIBRATION_BINS) -> float:
    """Count-weighted mean over bins of |observed frequency of ALL - mean predicted probability|."""
    curve = reliability_curve(y, p, n_bins).query("count > 0")
    gaps = (curve["observed_frequency"] - curve["mean_predicted"]).abs()
    return float((gaps * curve["count"]).sum() / curve["count"].sum())


def brier_score(y, p) -> float:
    """Mean squared difference between the probability of ALL and the truth (scikit-learn)."""
    return float(brier_score_loss(np.asarray(y, dtype=int), p, pos_label=1))
