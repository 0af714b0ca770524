"""The hyperparameter grid search (section 2.3.2) as one heat map of its ranking, the selected configuration
outlined (rule select_hyperparameters)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from leukemia_dtl.evaluate.figure_style import OKABE_ITO, new_figure, styled
from leukemia_dtl.evaluate.paper_values import model_name


def _axis_combinations(ranking: pd.DataFrame, axes: Sequence[str]) -> list[tuple]:
    """Value combinations of ``axes`` in grid order (each axis's values in the order the grid gave them)."""
    if not axes:
        return [()]
    values = [list(dict.fromkeys(ranking.sort_values("grid_order")[axis])) for axis in axes]
    return list(itertools.product(*values))


def _grid_point_label(names: Sequence[str], values: tuple) -> str:
    return "\n".join(f"{name}={value}" for name, value in zip(names, values, strict=True))


@styled
def plot_tuning_heatmap(ranking: pd.DataFrame, axes: Sequence[str], metric: str) -> Figure:
    """The grid as one heat map of ``metric``: rows combine the first half of ``axes``, columns the rest;
    the selected configuration (rank 1) is outlined."""
    row_axes, column_axes = list(axes[: (len(axes) + 1) // 2]), list(axes[(len(axes) + 1) // 2 :])
    rows, columns = _axis_combinations(ranking, row_axes), _axis_combinations(ranking, column_axes)
    scores = np.full((len(rows), len(columns)), np.nan)
    for _, result in ranking.iterrows():
        row = rows.index(tuple(result[axis] for axis in row_axes))
        column = columns.index(tuple(result[axis] for axis in column_axes))
        scores[row, column] = result[metric]
        if result["rank"] == 1:
            best = (row, column)
    figure = new_figure(figsize=(1.1 * len(columns) + 3, 0.45 * len(rows) * max(1, len(row_axes)) + 2))
    plot = figure.subplots()
    image = plot.imshow(scores, cmap="viridis_r" if metric == "val_loss" else "viridis", aspect="auto")
    for (row, column), score in np.ndenumerate(scores):
        if np.isfinite(score):
            # viridis is light at its top end: dark text there, light text elsewhere.
            light_cell = image.norm(score) > 0.6 if metric != "val_loss" else image.norm(score) < 0.4
            plot.text(
                column,
                row,
                f"{score:.3f}",
                ha="center",
                va="center",
                fontsize=9,
                color="black" if light_cell else "white",
            )
    plot.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor=OKABE_ITO[1], linewidth=2.5))
    plot.set(
        xticks=range(len(columns)),
        yticks=range(len(rows)),
        xticklabels=[_grid_point_label(column_axes, combination) for combination in columns],
        yticklabels=[_grid_point_label(row_axes, combination) for combination in rows],
        title=f"{model_name(ranking['model'].iloc[0])}: {metric} of {len(ranking)} configurations (best outlined)",
    )
    figure.colorbar(image, ax=plot, label=metric, shrink=0.8)
    return figure
