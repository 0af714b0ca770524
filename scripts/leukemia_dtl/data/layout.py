"""The C-NMC 2019 archive layout, its training file names, and the files of a tree in that layout.

Standard library only: ``rules/common.smk`` lists a user's own copy (``data.source: directory``) with
:func:`listing_digest` when it parses the workflow.

Under ``C-NMC_Leukemia/`` (Kaggle dataset andrewmvd/leukemia-classification, as the C-NMC 2019 challenge
released it): ``training_data/fold_{0,1,2}/{all,hem}/UID_<subject>_<image>_<cell>_<class>.bmp``;
``validation_data/C-NMC_test_prelim_phase_data/<n>.bmp`` with a labels CSV (``Patient_ID,new_names,labels``);
and ``testing_data/C-NMC_test_final_phase_data/<n>.bmp`` without labels.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import NEGATIVE_CLASS, POSITIVE_CLASS

TRAINING_FOLDS = ("fold_0", "fold_1", "fold_2")
PRELIM_DIR = "validation_data/C-NMC_test_prelim_phase_data"
PRELIM_LABELS = "validation_data/C-NMC_test_prelim_phase_data_labels.csv"
PRELIM_LABEL_COLUMNS = ("Patient_ID", "new_names", "labels")
FINAL_DIR = "testing_data/C-NMC_test_final_phase_data"
# The labels CSV codes ALL as 1 and HEM as 0.
PRELIM_LABEL_CODES = {"1": POSITIVE_CLASS, "0": NEGATIVE_CLASS}

_TRAINING_NAME = re.compile(r"^UID_(?P<subject>[Hh]?\d+)_(?P<image>\d+)_(?P<cell>\d+)_(?P<cls>all|hem)\.bmp$")


@dataclass(frozen=True)
class ImageName:
    subject: str
    image: int
    cell: int
    label: str


def parse_training_filename(name: str) -> ImageName:
    """Parse ``UID_<subject>_<image>_<cell>_<all|hem>.bmp``.

    Healthy subjects carry an ``H`` prefix that some files write as ``h``; the subject is upper-cased so
    that ``h3`` and ``H3`` group together.
    """
    match = _TRAINING_NAME.match(name)
    if match is None:
        raise ValueError(f"file name {name!r} is not UID_<subject>_<image>_<cell>_<all|hem>.bmp")
    return ImageName(
        subject=match["subject"].upper(),
        image=int(match["image"]),
        cell=int(match["cell"]),
        label=match["cls"].upper(),
    )


def files_under(folder: str | os.PathLike) -> Iterator[Path]:
    """Every file below ``folder``, in sorted order, entering symlinked folders too: a user's own copy may
    link its class folders to where the images really are. A link that leads back to a folder already
    listed (a loop, or the same images twice) is a UserError naming it."""
    entered = {}
    for directory, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in entered:
            raise UserError(
                f"{directory} leads to {real}, which is already listed as {entered[real]}: a symbolic link "
                f"makes a loop or lists the same images twice. Remove that link from the dataset folder."
            )
        entered[real] = directory
        folders.sort()
        for name in sorted(names):
            path = Path(directory, name)
            if path.is_file():
                yield path


def listing_digest(root: str | os.PathLike) -> str:
    """sha256 of every file's relative path, size and modification time below ``root``: it changes when
    an image is replaced, added or removed, at the cost of one directory listing, without reading images."""
    digest = hashlib.sha256()
    for path in files_under(root):
        status = path.stat()
        # os.fsencode: a file name need not be valid UTF-8; the inventory rejects such a file, naming it.
        digest.update(os.fsencode(path.relative_to(root)) + f"\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()
