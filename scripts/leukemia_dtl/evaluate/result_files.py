"""Reading back, checked, what the model stage and the metrics step wrote: per-image prediction tables,
training histories and per-run metrics files (whose writer is here too, so that the format version it stamps and
the one its readers expect are one). A malformed file is a UserError naming it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_json, read_tsv, require_columns, write_json
from leukemia_dtl.core.format_versions import FORMAT_VERSION_KEY, METRICS_FORMAT_VERSION, check_format_version
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.core.vocabulary import (
    CLASS_NAMES,
    CURVE_COLUMNS,
    PER_SEED_COLUMNS,
    POSITIVE_CLASS,
    PREDICTION_COLUMNS,
)
from leukemia_dtl.evaluate.paper_values import TABLE1

_REGENERATE = "Delete the file and re-run the workflow so the prediction step writes it again."
# The rule that writes every metrics file.
METRICS_RULE = "evaluate_predictions"


def _examples(values, limit: int = 3) -> str:
    values = list(values)
    shown = ", ".join(repr(value) for value in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _file_lines(rows: pd.Index) -> str:
    # +2: pandas rows count from 0 and the header is line 1.
    return _examples(row + 2 for row in rows)


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a prediction TSV, with ``p_all`` as float; raise UserError naming the file if it is malformed.

    ``pred`` is the model's argmax decision (ALL when p_all >= 0.5), checked here but never the decision of
    an evaluation output: those call ALL from ``p_all`` at ``statistics.threshold`` (``metrics.called_all``).
    """
    frame = read_tsv(path)
    require_columns(frame, PREDICTION_COLUMNS, f"Prediction file {path}", _REGENERATE)
    if frame.empty:
        raise UserError(f"Prediction file {path} has no rows. {_REGENERATE}")

    p_all = pd.to_numeric(frame["p_all"], errors="coerce")
    not_numbers = frame.index[p_all.isna()]
    if len(not_numbers):
        raise UserError(
            f"Prediction file {path} has empty or non-numeric p_all on line(s) {_file_lines(not_numbers)}. "
            f"{_REGENERATE}"
        )
    out_of_range = frame.index[(p_all < 0) | (p_all > 1)]
    if len(out_of_range):
        raise UserError(
            f"Prediction file {path} has p_all outside [0, 1] on line(s) {_file_lines(out_of_range)} "
            f"(e.g. {p_all[out_of_range[0]]}); p_all must be the probability of ALL, not a logit. "
            f"{_REGENERATE}"
        )
    for column in ("label", "pred"):
        bad_rows = frame.index[~frame[column].isin(CLASS_NAMES)]
        if len(bad_rows):
            raise UserError(
                f"Prediction file {path} has {column} values other than ALL or HEM on line(s) "
                f"{_file_lines(bad_rows)} (e.g. {frame.at[bad_rows[0], column]!r}). {_REGENERATE}"
            )
    duplicated = frame["path"][frame["path"].duplicated()].unique()
    if len(duplicated):
        raise UserError(
            f"Prediction file {path} lists image(s) {_examples(duplicated)} more than once; "
            f"each test image must have exactly one prediction. {_REGENERATE}"
        )
    return frame.assign(p_all=p_all.astype(float))


def align_predictions(
    a: pd.DataFrame, b: pd.DataFrame, path_a: str | os.PathLike, path_b: str | os.PathLike
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames sorted by image path, after checking they cover the same images with the same labels."""
    only_a = sorted(set(a["path"]) - set(b["path"]))
    only_b = sorted(set(b["path"]) - set(a["path"]))
    if only_a or only_b:
        raise UserError(
            f"Prediction files {path_a} and {path_b} do not cover the same test images: "
            f"{len(only_a)} only in the first ({_examples(only_a)}), "
            f"{len(only_b)} only in the second ({_examples(only_b)}). "
            "Both models must be evaluated on the same test split; re-run prediction for both."
        )
    aligned_a = a.sort_values("path", ignore_index=True)
    aligned_b = b.sort_values("path", ignore_index=True)
    relabelled = aligned_a["path"][aligned_a["label"] != aligned_b["label"]]
    if len(relabelled):
        raise UserError(
            f"Prediction files {path_a} and {path_b} give different labels for image(s) "
            f"{_examples(relabelled)}; both must come from the same labelled test split. "
            "Re-run prediction for both models."
        )
    return aligned_a, aligned_b


def is_all(frame: pd.DataFrame) -> np.ndarray:
    """1 where a prediction table's true label is ALL (the positive class), else 0."""
    return (frame["label"] == POSITIVE_CLASS).to_numpy(dtype=int)


def read_training_history(path: str | os.PathLike) -> pd.DataFrame:
    """A run's history.tsv, its curve columns numeric; UserError naming the file if it is malformed."""
    frame = read_tsv(path)
    require_columns(frame, CURVE_COLUMNS, f"Training history {path}", "Delete it and re-run training.")
    numeric = frame[list(CURVE_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    if frame.empty or numeric.isna().any().any():
        raise UserError(f"Training history {path} is empty or has non-numeric values; delete it and re-run training.")
    return numeric


def write_metrics(metrics: Mapping, path: str | os.PathLike) -> None:
    """The metrics JSON of one prediction set and subset, stamped with its format version."""
    write_json({**metrics, FORMAT_VERSION_KEY: METRICS_FORMAT_VERSION}, path)


def read_metrics(path: str | os.PathLike) -> dict:
    """A metrics JSON as :func:`write_metrics` wrote it; one of another format version (an older one has no
    stamp) is a UserError naming the file and the rule that rebuilds it."""
    metrics = read_json(path)
    check_format_version(metrics.get(FORMAT_VERSION_KEY), METRICS_FORMAT_VERSION, path, METRICS_RULE)
    return metrics


def read_keyed_metrics(paths: Iterable[str | os.PathLike], *fields: str) -> dict[tuple, Mapping]:
    """The metrics JSONs at ``paths`` (:func:`read_metrics`), each keyed by its run's ``fields`` read from its path
    (:func:`leukemia_dtl.core.run_paths.files_by`: ("model", "seed", "subset") or ("model", "subset"))."""
    return {key: read_metrics(path) for key, path in files_by(paths, *fields).items()}


def metric_entry(
    metrics: Mapping,
    metric: str,
    source: str | os.PathLike,
    *,
    section: str | None = None,
    fields: Sequence[str] = ("value",),
) -> Mapping:
    """``metrics[metric]`` (or ``metrics[section][metric]``) of a metrics JSON, checked to hold ``fields``;
    UserError naming ``source`` if it does not: the file the JSON was read from, or for metrics held without
    their path "of <whose metrics>"."""
    entries = metrics.get(section) if section else metrics
    entry = entries.get(metric) if isinstance(entries, Mapping) else None
    if not isinstance(entry, Mapping) or any(name not in entry for name in fields):
        where = f" under {section!r}" if section else ""
        raise UserError(
            f"Metrics file {source} has no {', '.join(fields)} for {metric!r}{where}; it was written by another "
            "version of the evaluation step. Delete it and re-run the evaluation."
        )
    return entry


def per_seed_metrics(
    metrics_files: Mapping[tuple[str, int, str], str | os.PathLike], metrics: Sequence[str] = tuple(TABLE1)
) -> pd.DataFrame:
    """Long frame (subset, metric, model, seed, value) from metrics JSONs keyed by (model, seed, subset).

    ``metrics`` picks the entries to keep; :func:`significance.paired_ttests` Holm-adjusts over all the
    metrics of a frame, so the default keeps exactly the paper's Table 1 family.
    """
    rows = []
    for (model, seed, subset), path in metrics_files.items():
        results = read_metrics(path)
        for metric in metrics:
            value = metric_entry(results, metric, path)["value"]
            rows.append(dict(zip(PER_SEED_COLUMNS, (subset, metric, model, seed, value), strict=True)))
    frame = pd.DataFrame(rows, columns=list(PER_SEED_COLUMNS))
    return frame.astype({"value": float}).sort_values(list(PER_SEED_COLUMNS[:4]), ignore_index=True)
