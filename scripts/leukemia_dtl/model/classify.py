"""Classify a folder of new images with a trained classifier, or with the mean P(ALL) of several (a seed
ensemble).

Every file under the folder is either scored or listed with the reason it was not; hidden files and folders
(names starting with a dot) are skipped. Images are decoded and resized exactly as the training cache was
built (``data.image_cache.load_resized``) at the image size the model was trained at, and scored through the
workflow's own prediction path, a chunk at a time so memory does not grow with the folder.

Command line (from the repository root)::

    PYTHONPATH=scripts .venv/bin/python -m leukemia_dtl.model.classify \\
        --model results/models/random/vgg19/seed0/model.keras [--model another.keras ...] \\
        --input my_cells/ --output my_cells.tsv [--rejected rejected.tsv] [--threshold 0.5] [--label NAME]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from leukemia_dtl.core.decisions import ARGMAX_THRESHOLD, class_calls
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import configure_logging
from leukemia_dtl.core.vocabulary import (
    CLASSIFY_COLUMNS,
    CLASSIFY_REJECTED_COLUMNS,
    CLASSIFY_SUFFIXES,
    POSITIVE_CLASS,
)
from leukemia_dtl.data.image_cache import load_resized
from leukemia_dtl.model import backend
from leukemia_dtl.model.classifiers import load_model
from leukemia_dtl.model.inference import predict_probability_of_all
from leukemia_dtl.model.inputs import ImageCache

log = logging.getLogger("leukemia_dtl")

# Images decoded and held at once: at 224 px, 256 images are 38 MB of pixels.
CHUNK_SIZE = 256
BATCH_SIZE = 32


def _one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def find_images(folder: str | os.PathLike) -> tuple[list[str], list[tuple[str, str]]]:
    """Every file under ``folder``, hidden ones excepted, as paths relative to it (posix, sorted): those with
    an image suffix (CLASSIFY_SUFFIXES, any case), and the others as (path, reason they are not read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(
            f"The folder to classify, {folder}, does not exist or is not a folder. Point classify.input (or "
            "--input) at the folder that holds the images."
        )
    images: list[str] = []
    rejected: list[tuple[str, str]] = []

    def unreadable_folder(error: OSError) -> None:
        relative = Path(error.filename).relative_to(folder).as_posix()
        rejected.append((relative, f"folder not read ({error.strerror}); its files were not classified"))

    for directory, subfolders, files in os.walk(folder, onerror=unreadable_folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(directory) / name
            relative = path.relative_to(folder).as_posix()
            if not path.is_file():
                rejected.append((relative, "not a regular file (a broken link, a pipe or a device)"))
            elif path.suffix.lower() in CLASSIFY_SUFFIXES:
                images.append(relative)
            else:
                rejected.append((relative, f"not read: only {', '.join(CLASSIFY_SUFFIXES)} files are classified"))
    return sorted(images), sorted(rejected)


def _image_size(models: Sequence, model_paths: Sequence[str | os.PathLike]) -> int:
    sizes = {str(path): model.input_shape[1] for path, model in zip(model_paths, models, strict=True)}
    if len(set(sizes.values())) > 1:
        raise UserError(
            f"The models take images of different sizes ({sizes}); an ensemble needs models trained at one "
            "image_size. Classify with each model on its own, or pick models of one size."
        )
    return next(iter(sizes.values()))


def _mean_probability_of_all(models: Sequence, pixels: np.ndarray, paths: list[str], batch_size: int) -> np.ndarray:
    # The chunk as an in-memory cache, so it takes the prediction tables' own path (and its refusal of
    # non-finite outputs): a folder image scores exactly as the same pixels in the workflow's cache.
    chunk = ImageCache(pixels, pd.Series(np.arange(len(paths)), index=paths))
    return np.mean([predict_probability_of_all(model, chunk, pd.Series(paths), batch_size) for model in models], axis=0)


def classify_folder(
    model_paths: Sequence[str | os.PathLike],
    folder: str | os.PathLike,
    threshold: float,
    label: str,
    predictions_path: str | os.PathLike,
    rejected_path: str | os.PathLike,
    chunk_size: int = CHUNK_SIZE,
    batch_size: int = BATCH_SIZE,
    threads: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every image under ``folder`` with the models at ``model_paths`` (P(ALL) = the mean of theirs) and
    write ``path, p_all, pred, model`` to ``predictions_path`` (``pred``: ALL where p_all >= ``threshold``;
    ``model``: ``label``) and ``path, reason`` for every file not scored to ``rejected_path``; return both.

    ``chunk_size`` images are decoded and scored at a time, ``batch_size`` per forward pass. ``threads``
    limits the backend's CPU threads (the rule's threads).
    """
    if threads:
        backend.limit_cpu_threads(threads)
    if not model_paths:
        raise UserError("Classifying needs at least one model file; give one (--model, or classify.model).")
    if not 0 <= threshold <= 1:
        raise UserError(f"The threshold must lie between 0 and 1, not {threshold}; fix it (--threshold).")
    folder = Path(folder)
    image_paths, rejected = find_images(folder)
    models = [load_model(path) for path in model_paths]
    image_size = _image_size(models, model_paths)

    scored: list[str] = []
    p_all: list[np.ndarray] = []
    for first in range(0, len(image_paths), chunk_size):
        pixels, readable = [], []
        for relative in image_paths[first : first + chunk_size]:
            try:
                pixels.append(load_resized(folder / relative, image_size))
            except Exception as error:  # whatever the decoder raises, the file is listed with it
                rejected.append((relative, f"cannot be decoded as an image ({_one_line(error)})"))
            else:
                readable.append(relative)
        if readable:
            p_all.append(_mean_probability_of_all(models, np.stack(pixels), readable, batch_size))
            scored += readable
        log.info("classified %d/%d images", min(first + chunk_size, len(image_paths)), len(image_paths))

    if not scored:
        examples = "; ".join(f"{path}: {reason}" for path, reason in sorted(rejected)[:3]) or "the folder is empty"
        raise UserError(
            f"No readable image under {folder} ({len(rejected)} file(s) not read; {examples}). Put the "
            f"{', '.join(CLASSIFY_SUFFIXES)} images to classify in that folder, or point classify.input "
            "(--input) at the right one."
        )
    p_all_values = np.concatenate(p_all)
    predictions = pd.DataFrame(
        {"path": scored, "p_all": p_all_values, "pred": class_calls(p_all_values, threshold), "model": label}
    )[list(CLASSIFY_COLUMNS)]
    rejected_table = pd.DataFrame(sorted(rejected), columns=list(CLASSIFY_REJECTED_COLUMNS))
    write_tsv(predictions, predictions_path)
    write_tsv(rejected_table, rejected_path)
    if len(rejected_table):
        log.warning("%d file(s) under %s were not classified; see %s", len(rejected_table), folder, rejected_path)
    return predictions, rejected_table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m leukemia_dtl.model.classify",
        description="Classify every image under a folder (ALL vs HEM) with trained .keras model(s).",
    )
    parser.add_argument(
        "--model", action="append", required=True, help=".keras model; repeat for an ensemble (mean P(ALL))"
    )
    parser.add_argument("--input", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--output", required=True, help="predictions TSV to write (path, p_all, pred, model)")
    parser.add_argument("--rejected", help="TSV of the files not classified (default: rejected.tsv beside --output)")
    parser.add_argument(
        "--threshold", type=float, default=ARGMAX_THRESHOLD, help="call ALL where p_all >= this (default 0.5)"
    )
    parser.add_argument("--label", help="the model column's value (default: the model file path(s))")
    arguments = parser.parse_args(argv)
    rejected_path = arguments.rejected or Path(arguments.output).parent / "rejected.tsv"
    configure_logging(None)
    try:
        predictions, rejected = classify_folder(
            arguments.model,
            arguments.input,
            arguments.threshold,
            arguments.label or "+".join(arguments.model),
            arguments.output,
            rejected_path,
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    called = (predictions["pred"] == POSITIVE_CLASS).sum()
    print(
        f"{len(predictions)} images classified ({called} {POSITIVE_CLASS} at threshold {arguments.threshold}), "
        f"{len(rejected)} file(s) not read; wrote {arguments.output} and {rejected_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
