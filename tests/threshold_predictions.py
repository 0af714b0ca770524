"""Prediction tables for the decision-threshold tests (issue #13, fault 5), and the confusion counts a reader
expects of them: the unit tests of metrics and figures (tests/evaluate/test_figures_threshold.py) and the
workflow run at threshold 0.3 (tests/test_threshold_workflow.py).

A helper module, not a test module: tests import it instead of each other.
"""

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from leukemia_dtl.core.decisions import class_calls
from leukemia_dtl.core.vocabulary import PREDICTION_COLUMNS

THRESHOLD = 0.3
# Order of the confusion figure's rows (truth) and columns (call), as the paper's Fig. 7 draws them.
ALL_FIRST = ["ALL", "HEM"]


def prediction_table(model_shift: float, seed: int, n_images: int = 60) -> pd.DataFrame:
    """A prediction table as the prediction step writes it: two ALL per HEM, p_all from a logistic score
    shifted towards HEM so that many images fall between 0.3 and 0.5, and ``pred`` the model's argmax."""
    rng = np.random.default_rng(seed)
    labels = np.where(np.arange(n_images) % 3 == 0, "HEM", "ALL")
    p_all = 1 / (1 + np.exp(-(rng.normal(np.where(labels == "ALL", 0.8, -0.8), 1.0) - model_shift)))
    return pd.DataFrame(
        {
            "path": [f"img_{index}.bmp" for index in range(n_images)],
            "subject": [f"subject_{index % 9}" for index in range(n_images)],
            "label": labels,
            "p_all": p_all,
            "pred": class_calls(p_all),
        }
    )[list(PREDICTION_COLUMNS)]


def counts_at(frame: pd.DataFrame, threshold: float) -> np.ndarray:
    """The confusion counts a reader expects at ``threshold``, ALL first, straight from scikit-learn."""
    called = np.where(frame["p_all"] >= threshold, "ALL", "HEM")
    return confusion_matrix(frame["label"], called, labels=ALL_FIRST)


def metrics_counts(metrics: dict) -> np.ndarray:
    return np.array([[metrics["tp"], metrics["fn"]], [metrics["fp"], metrics["tn"]]])


def drawn_counts(figure) -> list[np.ndarray]:
    """The counts written in each confusion matrix of ``figure`` (cell texts "count\\n(percent%)")."""
    matrices = [axes for axes in figure.axes if axes.get_label() != "<colorbar>"]
    return [np.array([float(text.get_text().split("\n")[0]) for text in axes.texts]).reshape(2, 2) for axes in matrices]
