"""The image inventory: every image of the C-NMC tree with subject, label and source, each decoded once,
and every file that had to be rejected with the reason."""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import require_columns
from leukemia_dtl.core.vocabulary import DATASET_DIR, INVENTORY_COLUMNS, REJECTED_COLUMNS
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
        for path in files_under(fold_dir):
            relative = path.relative_to(root).as_posix()
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


def _prelim_candidates(root: Path) -> tuple[list[dict], list[dict]]:
    labels_csv = root / PRELIM_LABELS
    if not labels_csv.is_file():
        raise UserError(f"{labels_csv} is missing: the prelim-phase labels file belongs to the C-NMC archive.")
    labels = pd.read_csv(labels_csv, dtype=str)
    require_columns(labels, PRELIM_LABEL_COLUMNS, str(labels_csv), "Use the file of the C-NMC archive from Kaggle.")
    listed = {}
    for record in labels.itertuples(index=False):
        listed[record.new_names] = (record.Patient_ID, record.labels)
    rows, rejected = [], []
    image_dir = root / PRELIM_DIR
    for path in sorted(image_dir.glob("*")) if image_dir.is_dir() else []:
        relative = path.relative_to(root).as_posix()
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


def _final_candidates(root: Path) -> list[dict]:
    image_dir = root / FINAL_DIR
    files = sorted(image_dir.glob("*.bmp")) if image_dir.is_dir() else []
    return [{"path": p.relative_to(root).as_posix(), "subject": "", "label": "", "source": "final"} for p in files]


def build_inventory(root: str | Path, workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every image of the dataset with subject, label and source; and every file that had to be rejected.

    Each candidate is decoded once here, in ``workers`` processes, so a corrupt file is reported with its
    reason instead of failing a training job later.
    """
    root = Path(root)
    training, rejected = _training_candidates(root)
    prelim, prelim_rejected = _prelim_candidates(root)
    candidates = training + prelim + _final_candidates(root)
    rejected += prelim_rejected
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
