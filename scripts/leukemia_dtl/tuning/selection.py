"""Pick the grid configuration with the best validation score, and read the pick back for training.

No Keras here: selection runs in the evaluation environment, training reads ``selected.yaml`` with
:func:`read_selected_hyperparameters`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import atomic_path, read_json, require_columns, write_tsv
from leukemia_dtl.core.vocabulary import TUNING_METRICS

LOWER_IS_BETTER = {"val_loss"}


def rank_configurations(results: Sequence[Mapping], axes: Sequence[str], metric: str) -> pd.DataFrame:
    """One row per configuration, best first, with ``rank`` 1..n.

    Best = highest ``metric`` (lowest for val_loss); ties go to the lower val_loss, then to the earlier
    configuration in grid order (the order of ``results``). A configuration whose metric is undefined
    (val_auc with one class in val) ranks last.
    """
    if metric not in TUNING_METRICS:
        raise UserError(f"tuning.metric must be one of {list(TUNING_METRICS)}, not {metric!r}.")
    if not results:
        raise UserError("No tuning results to select from: the grid is empty.")
    frame = pd.DataFrame(list(results))
    require_columns(frame, [*axes, *TUNING_METRICS], "The table of tuning results", "Rerun the tuning jobs.")
    frame["grid_order"] = np.arange(len(frame))
    ranked = frame.sort_values(
        [metric, "val_loss", "grid_order"],
        ascending=[metric in LOWER_IS_BETTER, True, True],
        na_position="last",
        kind="stable",
    )
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    first = ["rank", *axes, *TUNING_METRICS]
    return ranked[first + [column for column in ranked.columns if column not in first]].reset_index(drop=True)


def plain(value):
    """numpy scalars -> Python numbers, so YAML stays plain."""
    return value.item() if isinstance(value, np.generic) else value


def selected_document(ranking: pd.DataFrame, axes: Sequence[str], metric: str) -> dict:
    best = ranking.iloc[0]
    return {
        "model": plain(best["model"]),
        "hyperparameters": {axis: plain(best[axis]) for axis in axes},
        "metric": metric,
        "value": plain(best[metric]),
        "val_loss": plain(best["val_loss"]),
        "configurations": len(ranking),
        "tuning_epochs": plain(best["epochs"]),
        "tuning_seed": plain(best["seed"]),
    }


def select_configuration(
    result_paths: Sequence[str | os.PathLike],
    axes: Sequence[str],
    metric: str,
    selected_path: str | os.PathLike,
    ranking_path: str | os.PathLike,
) -> pd.DataFrame:
    """Rank the tuning results (in grid order), write the ranked table and ``selected.yaml``."""
    ranking = rank_configurations([read_json(path) for path in result_paths], axes, metric)
    if "diverged" in ranking and ranking["diverged"].eq(True).all():
        raise UserError(
            f"Every one of the {len(ranking)} tuning configurations diverged (loss NaN or infinite), so "
            "there is nothing to select. Add smaller values to tuning.grid.learning_rate and rerun."
        )
    write_tsv(ranking, ranking_path)
    with atomic_path(selected_path) as tmp:
        tmp.write_text(yaml.safe_dump(selected_document(ranking, axes, metric), sort_keys=False))
    return ranking


def read_selected_hyperparameters(path: str | os.PathLike) -> dict:
    """The selected configuration's values, to override the model's config entry."""
    with open(path) as handle:
        document = yaml.safe_load(handle) or {}
    values = document.get("hyperparameters")
    if not isinstance(values, dict) or not values:
        raise UserError(f"{path} names no hyperparameters; rerun the tuning selection (snakemake tune).")
    return values
