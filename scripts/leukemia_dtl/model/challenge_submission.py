"""The C-NMC 2019 challenge's final-phase submission: the seeds' mean P(ALL) for every unlabelled final-phase
image, and the file the organisers scored, one 0/1 call per line in image-number order (1 = ALL). Each seed's
final-phase P(ALL) comes from its prediction job (``inference.predict_run``, which checks the image names with
:func:`final_phase_order` before predicting). The published results it is compared with are
``evaluate/challenge.py``'s."""

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
from leukemia_dtl.core.fileio import atomic_path, read_tsv, write_tsv
from leukemia_dtl.core.vocabulary import POSITIVE_CLASS

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
    probability_paths: Sequence[str | os.PathLike],
    threshold: float,
    submission_path: str | os.PathLike,
    probabilities_path: str | os.PathLike,
) -> pd.DataFrame:
    """The challenge's final-phase submission of one model: P(ALL) per image is the mean over the seeds'
    final-phase predictions (``probability_paths``: one ``path, p_all`` table per seed, as ``predict_run``
    writes them), written by :func:`write_submission`, which returns ``image, p_all, call``.
    """
    if not probability_paths:
        raise UserError("The submission needs the final-phase predictions of at least one seed. Fix the rule's inputs.")
    tables = [read_tsv(path) for path in probability_paths]
    paths = tables[0]["path"]
    for path, table in zip(probability_paths[1:], tables[1:], strict=True):
        if not table["path"].equals(paths):
            raise UserError(
                f"{path} predicts other final-phase images than {probability_paths[0]}: the seeds' predictions were "
                "made from different final-phase caches. Rerun them: snakemake --forcerun predict_model."
            )
    p_all = np.zeros(len(paths))
    for table in tables:
        p_all += table["p_all"].astype(float).to_numpy()
    table = write_submission(paths.tolist(), p_all / len(tables), threshold, submission_path, probabilities_path)
    log.info(
        "final phase: %.1f %% of %d images called %s (mean of %d seeds)",
        100 * (table["call"] == POSITIVE_CLASS).mean(),
        len(table),
        POSITIVE_CLASS,
        len(tables),
    )
    return table
