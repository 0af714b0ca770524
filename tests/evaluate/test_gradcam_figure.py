"""Grad-CAM's panel: its cells are a seeded draw per outcome at the configured threshold, and an outcome without
cells is said in the figure. (The heat maps and the rule's figure: tests/model/test_gradcam.py.)"""

import numpy as np
import pandas as pd
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import PREDICTION_COLUMNS
from leukemia_dtl.evaluate.gradcam_figure import gradcam_panel_cells, plot_gradcam_panel


def predictions_table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """``(path, label, pred)`` rows as a prediction table."""
    frame = pd.DataFrame(rows, columns=["path", "label", "pred"])
    return frame.assign(subject=frame["path"].str[:2], p_all=np.where(frame["pred"] == "ALL", 0.8, 0.2))[
        list(PREDICTION_COLUMNS)
    ]


OUTCOME_ROWS = {"TP": ("ALL", "ALL"), "FP": ("HEM", "ALL"), "TN": ("HEM", "HEM"), "FN": ("ALL", "HEM")}


def test_the_panel_draw_depends_on_the_seed_not_on_row_order():
    counts = {"TP": 9, "FP": 2, "TN": 7, "FN": 1}
    table = predictions_table(
        [
            (f"{outcome}_{number:02d}.bmp", *OUTCOME_ROWS[outcome])
            for outcome in counts
            for number in range(counts[outcome])
        ]
    )
    cells = gradcam_panel_cells(table, cells_per_outcome=3, seed=4, threshold=0.5)

    assert list(cells["outcome"]) == ["TP"] * 3 + ["FP"] * 2 + ["TN"] * 3 + ["FN"]
    assert all(path.startswith(outcome) for path, outcome in zip(cells["path"], cells["outcome"], strict=True))
    assert not cells["path"].duplicated().any()
    shuffled = table.sample(frac=1, random_state=1)
    pd.testing.assert_frame_equal(gradcam_panel_cells(shuffled, 3, 4, threshold=0.5), cells)
    draws = {tuple(gradcam_panel_cells(table, 3, seed, threshold=0.5)["path"]) for seed in range(6)}
    assert len(draws) > 1


def test_outcomes_are_called_at_the_configured_threshold_not_the_argmax():
    """A cell of an ALL donor at p_all 0.6 is a true positive at threshold 0.5 and a false negative at 0.7, as in
    Table 1 with ``statistics.threshold: 0.7``; its heat map is then that of HEM, the class it is called."""
    table = predictions_table([("a.bmp", "ALL", "ALL"), ("b.bmp", "HEM", "HEM")]).assign(p_all=[0.6, 0.2])
    assert list(gradcam_panel_cells(table, 1, 0, threshold=0.5)["outcome"]) == ["TP", "TN"]
    cells = gradcam_panel_cells(table, 1, 0, threshold=0.7)
    assert list(cells["outcome"]) == ["TN", "FN"]
    assert list(cells["pred"]) == ["HEM", "HEM"]


@pytest.mark.slow
def test_a_missing_outcome_is_absent_from_the_draw_and_said_in_the_figure():
    table = predictions_table([("a.bmp", "ALL", "ALL"), ("b.bmp", "HEM", "HEM"), ("c.bmp", "HEM", "HEM")])
    cells = gradcam_panel_cells(table, cells_per_outcome=2, seed=0, threshold=0.5)
    assert list(cells["outcome"]) == ["TP", "TN", "TN"]

    images = np.zeros((3, 8, 8, 3), np.uint8)
    figure = plot_gradcam_panel(
        cells, images, np.zeros((3, 8, 8)), title="tiny, random split", layer_name="last_conv", map_shape=(2, 2)
    )
    texts = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert texts == ["no FP in the test subset", "no FN in the test subset"]
    assert figure.get_suptitle() == "tiny, random split\nGrad-CAM on last_conv, 2x2 map at 8 px"
    with pytest.raises(UserError, match="cells_per_outcome"):
        gradcam_panel_cells(table, cells_per_outcome=0, seed=0, threshold=0.5)
