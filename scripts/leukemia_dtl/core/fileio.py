"""File I/O of every stage: atomic writes (a killed job never leaves a file that looks complete) and checked
reads of the tables and JSON files that earlier rules wrote."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import CACHE_INDEX_COLUMNS


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; results are shared with the group like any file the user creates.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_tsv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def write_cache_index(paths: Sequence[str], path: str | os.PathLike) -> None:
    """The index of a cache array (images or features): row ``i`` holds the image ``paths[i]``."""
    row, image = CACHE_INDEX_COLUMNS
    write_tsv(pd.DataFrame({row: range(len(paths)), image: paths}), path)


def read_tsv(path: str | os.PathLike) -> pd.DataFrame:
    # keep_default_na=False: an empty label (final-phase images) stays "", not NaN.
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, remedy: str) -> None:
    """UserError naming ``what`` (e.g. "Split file results/splits/random.tsv") if ``frame`` lacks a column."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise UserError(f"{what} lacks column(s) {', '.join(missing)}; it needs {', '.join(columns)}. {remedy}")


def read_json(path: str | os.PathLike) -> dict:
    """A JSON output of an earlier rule; a damaged one is a UserError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {path} ({error}); delete it and rerun the rule that writes it") from None


def write_json(data: dict, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
