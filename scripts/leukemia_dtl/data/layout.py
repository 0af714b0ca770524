"""The C-NMC 2019 archive layout and its training file names.

Under ``C-NMC_Leukemia/`` (Kaggle dataset andrewmvd/leukemia-classification, as the C-NMC 2019 challenge
released it): ``training_data/fold_{0,1,2}/{all,hem}/UID_<subject>_<image>_<cell>_<class>.bmp``;
``validation_data/C-NMC_test_prelim_phase_data/<n>.bmp`` with a labels CSV (``Patient_ID,new_names,labels``);
and ``testing_data/C-NMC_test_final_phase_data/<n>.bmp`` without labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
