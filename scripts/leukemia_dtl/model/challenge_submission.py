"""The C-NMC 2019 challenge's final-phase submission: the seeds' mean P(ALL) for every unlabelled final-phase
image, and the file the organisers scored, one 0/1 call per line in image-number order (1 = ALL). The published
results it is compared with are ``evaluate/challenge.py``'s; this part predicts, so it is the model stage's."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from leukemia_dtl.core.decisions import called_all, class_calls
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import atomic_path, write_tsv
from leukemia_dtl.core.vocabulary import POSITIVE_CLASS
from leukemia_dtl.model import backend
from leukemia_dtl.model.classifiers import load_model
from leukemia_dtl.model.inference import predict_probability_of_all
from leukemia_dtl.model.inputs import ImageCache

log = logging.getLogger("leukemia_dtl")

_IMAGE_NUMBER = re.compile(r"([1-9][0-9]*)\.bmp")


def final_phase_order(paths: Sequence[str]) -> np.ndarray:
    """Positions of ``paths`` in the submission's order, by image number (9.bmp before 10.bmp).

    UserError unless the file names are exactly 1.bmp ... N.bmp, N = len(paths): the submission's lines are
    matched to the organisers' labels by position only.
    """
    names = [PurePosixPath(path).name for path in paths]
    matches = [_IMAGE_NUMBER.fullmatch(name) for name in names]
    odd = [name for name, match in zip(names, matches, strict=True) if match is None]
    numbers = sorted(int(match[1]) for match in matches if match)
    if odd or numbers != list(range(1, len(names) + 1)):
        missing = sorted(set(range(1, len(names) + 1)) - set(numbers))
        raise UserError(
            f"The final-phase images must be named 1.bmp to {len(names)}.bmp, one each, as in the archive's "
            f"testing_data/C-NMC_test_final_phase_data; found {len(odd)} other name(s) {odd[:3]} and "
            f"{len(missing)} missing number(s) {missing[:3]}. Restore the folder from the archive and rebuild the "
            "final-phase cache."
        )
    return np.argsort([int(match[1]) for match in matches], kind="stable")


def write_submission(
    paths: Sequence[str],
    p_all,
    threshold: float,
    submission_path: str | os.PathLike,
    probabilities_path: str | os.PathLike,
) -> pd.DataFrame:
    """Write the challenge's submission file (one line per image in number order: 1 = ALL, 0 = HEM, ALL where
    ``p_all >= threshold``) and ``image, p_all, call`` beside it; return that table."""
    order = final_phase_order(paths)
    p_all = np.asarray(p_all, dtype=float)[order]
    is_all = called_all(p_all, threshold)
    table = pd.DataFrame(
        {
            "image": [PurePosixPath(paths[position]).name for position in order],
            "p_all": p_all,
            "call": class_calls(p_all, threshold),
        }
    )
    write_tsv(table, probabilities_path)
    with atomic_path(submission_path) as tmp:
        tmp.write_text("".join(f"{int(called)}\n" for called in is_all))
    return table


def challenge_submission(
    model_paths: Sequence[str | os.PathLike],
    batch_sizes: Sequence[int],
    cache: str | os.PathLike,
    threshold: float,
    submission_path: str | os.PathLike,
    probabilities_path: str | os.PathLike,
    test_time_augmentation: bool = False,
    threads: int | None = None,
) -> pd.DataFrame:
    """The challenge's final-phase submission from every image of ``cache`` (the final-phase image cache):
    P(ALL) is the mean over the models (one per seed, each predicting at its batch size from
    ``batch_sizes``), with test-time augmentation if asked; written by
    :func:`write_submission`, which returns ``image, p_all, call``.
    """
    if threads:
        backend.limit_cpu_threads(threads)
    if len(model_paths) != len(batch_sizes) or not model_paths:
        raise UserError(
            f"The submission needs one batch size per model and at least one model; got {len(model_paths)} "
            f"model(s) and {len(batch_sizes)} batch size(s). Fix the rule's inputs."
        )
    image_cache = ImageCache.open(cache, rule="build_final_phase_cache")
    paths = pd.Series(image_cache.row_of_path.index)
    final_phase_order(paths)  # unusable image names fail before any model runs
    p_all = np.zeros(len(paths))
    for model_path, batch_size in zip(model_paths, batch_sizes, strict=True):
        model = load_model(model_path)
        if model.input_shape[1] != image_cache.image_size:
            raise UserError(
                f"Model {model_path} takes {model.input_shape[1]} px images but the final-phase cache {cache} "
                f"holds {image_cache.image_size} px ones. Rebuild that cache at the models' image_size."
            )
        p_all += predict_probability_of_all(model, image_cache, paths, batch_size, test_time_augmentation)
        log.info("final phase: predicted %d images with %s", len(paths), model_path)
    table = write_submission(paths.tolist(), p_all / len(model_paths), threshold, submission_path, probabilities_path)
    log.info(
        "final phase: %.1f %% of %d images called %s",
        100 * (table["call"] == POSITIVE_CLASS).mean(),
        len(table),
        POSITIVE_CLASS,
    )
    return table
