"""The image inventory: every image of the C-NMC tree with subject, label and source, each decoded once,
and every file that had to be rejected with the reason."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import require_columns
from leukemia_dtl.core.vocabulary import DATASET_DIR, FINAL_PHASE_SOURCE, INVENTORY_COLUMNS, REJECTED_COLUMNS
from leukemia_dtl.data.layout import (
    FINAL_DIR,
    PRELIM_DIR,
    PRELIM_LABEL_CODES,
    PRELIM_LABEL_COLUMNS,
    PRELIM_LABELS,
    TRAINING_FOLDS,
    files_under,
    parse_training_filename,
)

log = logging.getLogger(__name__)


def check_image(path: Path) -> str | None:
    """Decode the image fully; return why it is unusable, or None if it is fine."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.width < 1 or image.height < 1:
                return "image has no pixels"
    except Exception as error:  # PIL raises many types for damaged files; all mean "cannot decode".
        return f"cannot decode: {type(error).__name__}: {error}"
    return None


def _named_in_utf8(paths: Iterable[Path], root: Path, source: str, rejected: list[dict]) -> Iterator[tuple[Path, str]]:
    """Each of ``paths`` with its path relative to ``root``, except a path that is not valid UTF-8: that one
    goes to ``rejected``. Linux allows any bytes in a file name, which Python hands over with the bad bytes
    as lone surrogates; written to a TSV they would crash the rule, so such a file is listed with the bytes
    escaped (``\\xff``) instead."""
    for path in paths:
        relative = path.relative_to(root).as_posix()
        try:
            relative.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(relative).decode("utf-8", errors="backslashreplace")
            rejected.append({"path": shown, "source": source, "reason": "file name is not valid UTF-8: rename it"})
            continue
        yield path, relative


def _training_candidates(root: Path) -> tuple[list[dict], list[dict]]:
    rows, rejected = [], []
    for fold in TRAINING_FOLDS:
        fold_dir = root / "training_data" / fold
        if not fold_dir.is_dir():
            raise UserError(
                f"{fold_dir} is missing: the dataset root {root} does not have the C-NMC layout "
                f"(training_data/fold_0..2/all|hem). Point data.directory at the folder that holds "
                f"{DATASET_DIR}/, or use data.source: kaggle|archive."
            )
        for path, relative in _named_in_utf8(files_under(fold_dir), root, fold, rejected):
            try:
                parsed = parse_training_filename(path.name)
            except ValueError as error:
                rejected.append({"path": relative, "source": fold, "reason": str(error)})
                continue
            if path.parent.name.upper() != parsed.label:
                rejected.append(
                    {
                        "path": relative,
                        "source": fold,
                        "reason": f"class {parsed.label} in the name but stored under {path.parent.name}/",
                    }
                )
                continue
            rows.append({"path": relative, "subject": parsed.subject, "label": parsed.label, "source": fold})
    return rows, rejected


def _prelim_labels(labels_csv: Path) -> dict[str, tuple[str, str]]:
    """``new_names`` -> (``Patient_ID``, ``labels``) of the prelim-phase labels CSV. An empty cell or an image
    listed twice is a UserError naming the file and its lines: either would silently decide a label."""
    # keep_default_na=False: an empty cell stays "" (not NaN) so that it can be reported as empty.
    labels = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    remedy = "Use the file of the C-NMC archive from Kaggle."
    require_columns(labels, PRELIM_LABEL_COLUMNS, str(labels_csv), remedy)
    empty = labels[list(PRELIM_LABEL_COLUMNS)].apply(lambda column: column.str.strip() == "")
    if empty.any(axis=None):
        cells = [
            f"line {_csv_line(row)} ({', '.join(empty.columns[flags])})"
            for row, flags in empty[empty.any(axis=1)].iterrows()
        ]
        raise UserError(f"{labels_csv} has empty cells: {'; '.join(cells)}. Each row needs all three. {remedy}")
    repeated = labels[labels["new_names"].duplicated(keep=False)].groupby("new_names").groups
    if repeated:
        rows = "; ".join(
            f"{name} on lines {', '.join(str(_csv_line(row)) for row in index)}" for name, index in repeated.items()
        )
        raise UserError(
            f"{labels_csv} lists an image more than once ({rows}): which label holds? Keep one row per image. {remedy}"
        )
    return {record.new_names: (record.Patient_ID, record.labels) for record in labels.itertuples(index=False)}


def _csv_line(row: int) -> int:
    """The line of a data frame's row in its CSV file: line 1 is the header."""
    return row + 2


def _prelim_candidates(root: Path) -> tuple[list[dict], list[dict]]:
    labels_csv = root / PRELIM_LABELS
    if not labels_csv.is_file():
        raise UserError(f"{labels_csv} is missing: the prelim-phase labels file belongs to the C-NMC archive.")
    listed = _prelim_labels(labels_csv)
    rows, rejected = [], []
    image_dir = root / PRELIM_DIR
    paths = sorted(image_dir.glob("*")) if image_dir.is_dir() else []
    for path, relative in _named_in_utf8(paths, root, "prelim", rejected):
        if path.name not in listed:
            rejected.append({"path": relative, "source": "prelim", "reason": f"not listed in {PRELIM_LABELS}"})
            continue
        original_name, code = listed.pop(path.name)
        try:
            subject = parse_training_filename(original_name).subject
        except ValueError as error:
            rejected.append({"path": relative, "source": "prelim", "reason": f"Patient_ID: {error}"})
            continue
        if code not in PRELIM_LABEL_CODES:
            rejected.append({"path": relative, "source": "prelim", "reason": f"label {code!r} is not 0 or 1"})
            continue
        rows.append({"path": relative, "subject": subject, "label": PRELIM_LABEL_CODES[code], "source": "prelim"})
    for missing in sorted(listed):
        rejected.append(
            {"path": f"{PRELIM_DIR}/{missing}", "source": "prelim", "reason": f"listed in {PRELIM_LABELS} but missing"}
        )
    return rows, rejected


def _final_candidates(root: Path) -> tuple[list[dict], list[dict]]:
    image_dir = root / FINAL_DIR
    paths = sorted(image_dir.glob("*.bmp")) if image_dir.is_dir() else []
    rejected = []
    rows = [
        {"path": relative, "subject": "", "label": "", "source": FINAL_PHASE_SOURCE}
        for _, relative in _named_in_utf8(paths, root, FINAL_PHASE_SOURCE, rejected)
    ]
    return rows, rejected


def build_inventory(root: str | Path, workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every image of the dataset with subject, label and source; and every file that had to be rejected.

    Each candidate is decoded once here, in ``workers`` processes, so a corrupt file is reported with its
    reason instead of failing a training job later.
    """
    root = Path(root)
    training, rejected = _training_candidates(root)
    prelim, prelim_rejected = _prelim_candidates(root)
    final, final_rejected = _final_candidates(root)
    candidates = training + prelim + final
    rejected += prelim_rejected + final_rejected
    log.info("decoding %d images with %d workers", len(candidates), workers)
    rows = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        paths = [root / row["path"] for row in candidates]
        problems = pool.map(check_image, paths, chunksize=64)
        for done, (row, problem) in enumerate(zip(candidates, problems, strict=True), start=1):
            if problem is None:
                rows.append(row)
            else:
                rejected.append({"path": row["path"], "source": row["source"], "reason": problem})
            if done % 2000 == 0 or done == len(candidates):
                log.info("decoded %d/%d images", done, len(candidates))
    inventory = pd.DataFrame(rows, columns=INVENTORY_COLUMNS)
    rejected_frame = pd.DataFrame(rejected, columns=REJECTED_COLUMNS).sort_values("path", ignore_index=True)
    for reason_row in rejected_frame.itertuples(index=False):
        log.warning("rejected %s: %s", reason_row.path, reason_row.reason)
    log.info("inventory: %d images kept, %d rejected", len(inventory), len(rejected_frame))
    if inventory.empty:
        raise UserError(f"no readable images under {root}: is it the C-NMC_Leukemia folder?")
    return inventory, rejected_frame


def require_few_rejected(inventory: pd.DataFrame, rejected: pd.DataFrame, max_rejected_fraction: float) -> None:
    """UserError summarising the reasons when more than ``max_rejected_fraction`` of the files were rejected.

    A few damaged files are expected and reported; many mean a wrong folder, a wrong file extension or a
    broken copy, which would otherwise surface only as a strange result after training.
    """
    total = len(inventory) + len(rejected)
    if not total or len(rejected) / total <= max_rejected_fraction:
        return
    per_source = ", ".join(f"{source} {count}" for source, count in rejected["source"].value_counts().items())
    # Alike reasons differ only in the file they quote: count them together.
    kinds = rejected["reason"].str.replace(r"'[^']*'", "'…'", regex=True).value_counts()
    common = "; ".join(f"{count} × {kind}" for kind, count in kinds.head(3).items())
    raise UserError(
        f"{len(rejected)} of {total} files were rejected ({len(rejected) / total:.1%}, more than "
        f"data.max_rejected_fraction = {max_rejected_fraction:g}), by source {per_source}. Most common reasons: "
        f"{common}. The log lists every rejected file with its reason. Check that the dataset is the complete "
        f"C-NMC archive with its .bmp names in the original folders, or raise data.max_rejected_fraction if losing "
        f"these files is intended."
    )
