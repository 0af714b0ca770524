"""How the evaluation's tables are written for reading: "mean ± sd" texts, tables in two parts, and the TSV and
Markdown files (Tables 1 and 2, the leakage, subject and challenge tables, the run overview, the model cards).

A table in two parts holds first the columns for reading (named in words, numbers formatted as "mean ± sd",
listed in ``frame.attrs["markdown_columns"]`` and the only ones in the Markdown), then snake_case columns holding
the same numbers unformatted for machines. A one-line ``frame.attrs["caption"]`` goes under the Markdown title.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import pandas as pd
from pandas.api.types import is_numeric_dtype

from leukemia_dtl.core.fileio import atomic_path, write_tsv
from leukemia_dtl.evaluate.paper_values import model_name

MARKDOWN_COLUMNS = "markdown_columns"
CAPTION = "caption"

# A part of a table's row, as (shown, data): text columns for reading, numeric columns for machines.
Columns = tuple[dict, dict]


def mean_sd(values) -> tuple[float, float, int]:
    """Mean, sample sd (NaN with fewer than two values) and count of the values that are not NaN."""
    values = pd.Series(values, dtype=float).dropna()
    return values.mean(), values.std(ddof=1), len(values)


def mean_sd_text(mean: float, sd: float, digits: int) -> str:
    """ "0.801 ± 0.012"; the mean alone when there is no sd (one seed)."""
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if math.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def model_columns(values, model: str, digits: int) -> Columns:
    """A model's mean ± sd over its seeds' ``values``, and for machines its mean, sd and seed count."""
    mean, sd, n_seeds = mean_sd(values)
    shown = {f"{model_name(model)} (mean ± sd)": mean_sd_text(mean, sd, digits)}
    return shown, {f"{model}_mean": mean, f"{model}_sd": sd, f"{model}_n_seeds": n_seeds}


def paper_value_columns(paper_row: Mapping[str, float] | None, model: str, text_format: str) -> Columns:
    """The paper's value for ``model`` from ``paper_row``, blank (NaN for machines) where the paper has none."""
    value = paper_row.get(model, math.nan) if paper_row else math.nan
    shown = {f"Paper {model_name(model)}": "" if math.isnan(value) else format(value, text_format)}
    return shown, {f"paper_{model}": value}


def two_part_table(rows: list[list[Columns]]) -> pd.DataFrame:
    """A frame with the shown columns first, then the data columns; only the shown go into Markdown. The
    first row names every column; later rows may leave some out (empty text, NaN)."""
    merged = []
    for parts in rows:
        shown = {name: text for part_shown, _ in parts for name, text in part_shown.items()}
        data = {name: value for _, part_data in parts for name, value in part_data.items()}
        merged.append(shown | data)
    shown_columns = [name for part_shown, _ in rows[0] for name in part_shown]
    data_columns = [name for _, part_data in rows[0] for name in part_data]
    frame = pd.DataFrame(merged, columns=shown_columns + data_columns)
    frame[shown_columns] = frame[shown_columns].fillna("")
    # Rows without a seed count (an ensemble's) leave it empty rather than turning the counts into floats.
    counts = [name for name in data_columns if name.endswith("_n_seeds")]
    frame[counts] = frame[counts].astype("Int64")
    frame.attrs[MARKDOWN_COLUMNS] = shown_columns
    return frame


def _markdown_cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, title: str, caption: str | None = None) -> str:
    """A GitHub-flavoured Markdown table under a level-2 heading and, if given, a one-line caption;
    numeric columns right-aligned."""

    def line(cells) -> str:
        return "| " + " | ".join(cells) + " |"

    alignment = ["---:" if is_numeric_dtype(frame[column]) else "---" for column in frame.columns]
    body = [line(_markdown_cell(value) for value in row) for row in frame.astype(object).to_numpy()]
    above = [f"## {title}", "", *([" ".join(caption.split()), ""] if caption else [])]
    return "\n".join([*above, line(map(str, frame.columns)), line(alignment), *body]) + "\n"


def write_table(frame: pd.DataFrame, tsv_path: str | os.PathLike, md_path: str | os.PathLike, title: str) -> None:
    """Write every column to ``tsv_path`` and the reading columns (``frame.attrs["markdown_columns"]``,
    else all) as a Markdown table to ``md_path``, under ``frame.attrs["caption"]`` if there is one, both
    atomically."""
    write_tsv(frame, tsv_path)
    shown = frame[frame.attrs.get(MARKDOWN_COLUMNS, list(frame.columns))]
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown_table(shown, title, frame.attrs.get(CAPTION)))
