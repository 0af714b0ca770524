"""Grad-CAM's figure: the seeded panel of test cells, up to a few per outcome (true and false positives and
negatives, ALL the positive class), each beside its Grad-CAM heat map over it. The cells are drawn here from a
prediction table; their heat maps come from the model stage (:mod:`leukemia_dtl.model.gradcam`), and rule
plot_gradcam hands one to the other.

No Keras: the plot_gradcam rule runs in envs/train.yaml, but this module needs only NumPy, pandas and matplotlib.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from leukemia_dtl.core.decisions import class_calls
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import GRADCAM_OUTCOMES, NEGATIVE_CLASS, POSITIVE_CLASS
from leukemia_dtl.evaluate.figure_style import new_figure, styled

# (label, pred) -> outcome, ALL being the positive class; the panel's rows follow GRADCAM_OUTCOMES.
OUTCOME_OF = {
    (POSITIVE_CLASS, POSITIVE_CLASS): "TP",
    (NEGATIVE_CLASS, POSITIVE_CLASS): "FP",
    (NEGATIVE_CLASS, NEGATIVE_CLASS): "TN",
    (POSITIVE_CLASS, NEGATIVE_CLASS): "FN",
}
OUTCOME_DESCRIPTIONS = {outcome: f"{label} called {pred}" for (label, pred), outcome in OUTCOME_OF.items()}
HEATMAP_COLORMAP = "jet"
HEATMAP_ALPHA = 0.45
# The predictions the panel draws from: the rule passes a test-subset prediction table.
PANEL_SUBSET = "test"


def gradcam_panel_cells(
    predictions: pd.DataFrame, cells_per_outcome: int, seed: int, *, threshold: float
) -> pd.DataFrame:
    """The panel's cells: up to ``cells_per_outcome`` rows of ``predictions`` per outcome (TP, FP, TN, FN from
    ``label`` and the call at ``threshold``, as every table and figure calls; ``pred`` becomes that call), drawn
    with ``numpy.random.default_rng(seed)`` in GRADCAM_OUTCOMES order from the rows sorted by path, so the draw
    does not depend on the table's row order. Returns them with an ``outcome``
    column, grouped in GRADCAM_OUTCOMES order and by path within each; an outcome without rows is absent."""
    if cells_per_outcome < 1:
        raise UserError(f"gradcam.cells_per_outcome is {cells_per_outcome}; set it to 1 or more.")
    calls = class_calls(predictions["p_all"], threshold)
    outcomes = [OUTCOME_OF.get(pair) for pair in zip(predictions["label"], calls, strict=True)]
    if None in outcomes:
        raise UserError(
            f"Grad-CAM's predictions hold labels or calls other than {POSITIVE_CLASS} and {NEGATIVE_CLASS}; "
            "rerun the prediction step that wrote them."
        )
    cells = predictions.assign(pred=calls, outcome=outcomes).sort_values("path", kind="stable", ignore_index=True)
    rng = np.random.default_rng(seed)
    drawn = []
    for outcome in GRADCAM_OUTCOMES:
        candidates = cells[cells["outcome"] == outcome]
        picked = rng.choice(len(candidates), size=min(cells_per_outcome, len(candidates)), replace=False)
        drawn.append(candidates.iloc[np.sort(picked)])
    return pd.concat(drawn, ignore_index=True)


def _bare(axes) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)


@styled
def plot_gradcam_panel(
    cells: pd.DataFrame,
    images: np.ndarray,
    heatmaps: np.ndarray,
    *,
    title: str,
    layer_name: str,
    map_shape: tuple[int, int],
) -> Figure:
    """One row per outcome in GRADCAM_OUTCOMES order: each cell of ``cells`` (from :func:`gradcam_panel_cells`,
    ``images`` and ``heatmaps`` in its row order) as the image and, beside it, its heat map over the image,
    titled with the subject and p(ALL). An outcome without cells gets a row that says so; the title names the
    layer and its map resolution, which at small image sizes is a handful of cells."""
    columns = max(cells["outcome"].value_counts(), default=1)
    figure = new_figure(figsize=(3.0 * columns + 1.2, 2.2 * len(GRADCAM_OUTCOMES) + 0.8))
    grid = figure.subplots(len(GRADCAM_OUTCOMES), 2 * columns, squeeze=False)
    heat_image = None
    for outcome, row in zip(GRADCAM_OUTCOMES, grid, strict=True):
        for axes in row:
            _bare(axes)
        row[0].set_ylabel(f"{outcome}\n({OUTCOME_DESCRIPTIONS[outcome]})")
        positions = np.flatnonzero(cells["outcome"].to_numpy() == outcome)
        if not len(positions):
            row[0].text(0.0, 0.5, f"no {outcome} in the {PANEL_SUBSET} subset", transform=row[0].transAxes, va="center")
        for column, position in enumerate(positions):
            cell = cells.iloc[position]
            image_axes, heat_axes = row[2 * column], row[2 * column + 1]
            image_axes.imshow(images[position])
            image_axes.set_title(f"{cell['subject']}\np(ALL) {cell['p_all']:.2f}", fontsize=9)
            heat_axes.imshow(images[position])
            heat_image = heat_axes.imshow(
                heatmaps[position], cmap=HEATMAP_COLORMAP, alpha=HEATMAP_ALPHA, vmin=0.0, vmax=1.0
            )
            heat_axes.set_title(f"Grad-CAM, {cell['pred']} log-odds", fontsize=9)
        for axes in row[2 * len(positions) :]:
            if axes is not row[0]:
                axes.set_axis_off()
    if heat_image is not None:
        figure.colorbar(heat_image, ax=grid, label="Grad-CAM (scaled per image)", shrink=0.5)
    height, width = map_shape
    figure.suptitle(f"{title}\nGrad-CAM on {layer_name}, {height}x{width} map at {images.shape[1]} px")
    return figure
