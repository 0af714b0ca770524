"""How a probability of ALL becomes a call: the one rule behind the prediction tables' ``pred`` column, every
thresholded metric, table and figure, and the challenge submission. NumPy only, so that the model stage (no
SciPy) and the evaluation stage (no Keras) share it."""

from __future__ import annotations

import numpy as np

from leukemia_dtl.core.vocabulary import NEGATIVE_CLASS, POSITIVE_CLASS

# The model's own decision, the argmax of its two normalised outputs: the ``pred`` column of a prediction table.
ARGMAX_THRESHOLD = 0.5


def called_all(p_all, threshold: float) -> np.ndarray:
    """1 where an image is called ALL, ``p_all >= threshold``, else 0."""
    return (np.asarray(p_all, dtype=float) >= threshold).astype(int)


def class_calls(p_all, threshold: float = ARGMAX_THRESHOLD) -> np.ndarray:
    """ALL or HEM per image, by :func:`called_all`; at the default threshold, a prediction table's ``pred``."""
    return np.where(called_all(p_all, threshold) == 1, POSITIVE_CLASS, NEGATIVE_CLASS)
