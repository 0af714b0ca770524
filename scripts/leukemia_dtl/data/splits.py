"""The paper's subset exclusion, the split schemes (image-level, subject-disjoint, and the rotations of grouped
cross-validation over the organisers' folds) and the subject-leakage report."""

from __future__ import annotations

import functools
import logging
import os

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, require_columns
from leukemia_dtl.core.vocabulary import (
    CLASS_NAMES,
    FOLD_ROTATIONS,
    PATIENT_SPLIT,
    PREDICTED_SUBSETS,
    RANDOM_SPLIT,
    SPLIT_COLUMNS,
    SUBSETS,
    TRAINING_SPLITS,
)
from leukemia_dtl.data.layout import TRAINING_FOLDS

log = logging.getLogger(__name__)


def read_split(path: str | os.PathLike) -> pd.DataFrame:
    """The split table, checked: columns path, subject, label (ALL/HEM), subset (train/val/test/external)."""
    split = read_tsv(path)
    require_columns(split, SPLIT_COLUMNS, f"Split file {path}", "Rebuild it: snakemake --forcerun split_dataset.")
    bad_labels = sorted(set(split["label"]) - set(CLASS_NAMES))
    bad_subsets = sorted(set(split["subset"]) - set(SUBSETS))
    if bad_labels or bad_subsets:
        raise UserError(
            f"Split file {path} has unknown label(s) {bad_labels} or subset(s) {bad_subsets}; "
            f"labels must be {list(CLASS_NAMES)} and subsets {list(SUBSETS)}. Rebuild it: snakemake --forcerun "
            "split_dataset."
        )
    return split


FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
# Within a rotation's two training folds: the patient split's train to val ratio.
ROTATION_TRAIN_FRACTION = FRACTIONS["train"] / (FRACTIONS["train"] + FRACTIONS["val"])


def exclude_subsets(inventory: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Keep the labelled training folds as the paper did; return kept, excluded and a per-source summary."""
    is_kept = inventory["source"].isin(TRAINING_FOLDS)
    kept = inventory[is_kept].reset_index(drop=True)
    excluded = inventory[~is_kept].reset_index(drop=True)
    summary = (
        inventory.assign(
            status=np.where(is_kept, "kept", "excluded"),
            label=inventory["label"].replace("", "unlabelled"),
        )
        .groupby(["status", "source", "label"], as_index=False)
        .size()
        .rename(columns={"size": "images"})
    )
    log.info("kept %d images of the training folds, excluded %d", len(kept), len(excluded))
    return kept, excluded, summary


def random_image_split(kept: pd.DataFrame, seed: int) -> pd.Series:
    """The paper's stratified 70/15/15 image-level split.

    70 % train, then the remaining 30 % halved, both stratified by label with scikit-learn: on the real
    10,661 images this gives exactly the paper's 7,462 / 1,599 / 1,600 (section 2.1).
    """
    train, rest = train_test_split(kept.index, train_size=0.7, stratify=kept["label"], random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=kept.loc[rest, "label"], random_state=seed)
    subset = pd.Series("", index=kept.index, dtype=object)
    subset[train], subset[val], subset[test] = "train", "val", "test"
    return subset


def _subjects_by_class(kept: pd.DataFrame, seed: int, boundaries: dict[str, float]) -> pd.Series:
    """Each image's subset, whole subjects at a time: within each class, subjects shuffled with ``seed`` are taken
    in turn into each subset of ``boundaries`` ({subset: cumulative share of the class's images}, in order) until
    it holds its share; the last subset takes the rest. The last subject goes to the last subset and, if the one
    before it got none, the one before last to it, so that small classes reach every subset."""
    mixed = kept.groupby("subject")["label"].nunique()
    if (mixed > 1).any():
        raise UserError(
            f"subjects with both ALL and HEM images cannot be split by subject: {list(mixed[mixed > 1].index)}"
        )
    subsets = list(boundaries)
    rng = np.random.default_rng(seed)
    subset_of_subject = {}
    for label, images in kept.groupby("label"):
        sizes = images["subject"].value_counts().sort_index()
        subjects = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        if len(subjects) < len(subsets):
            raise UserError(
                f"a subject-disjoint split into {', '.join(subsets)} needs at least {len(subsets)} {label} subjects, "
                f"found {len(subjects)}"
            )
        covered_before = ((sizes[subjects].cumsum() - sizes[subjects]) / sizes.sum()).to_numpy()
        assigned = np.full(len(subjects), subsets[-1], dtype=object)
        for subset, share in reversed(list(boundaries.items())[:-1]):
            assigned[covered_before < share] = subset
        assigned[-1] = subsets[-1]
        if len(subsets) > 2 and subsets[-2] not in assigned[:-1]:
            assigned[-2] = subsets[-2]
        subset_of_subject.update(zip(subjects, assigned, strict=True))
    return kept["subject"].map(subset_of_subject)


def subject_disjoint_split(kept: pd.DataFrame, seed: int) -> pd.Series:
    """Subject-disjoint, label-stratified split with about 70/15/15 of each class's images.

    C-NMC subjects are either patients (all ALL) or healthy (all HEM), so stratifying subjects by class
    stratifies images. Within each class, subjects are shuffled with ``seed`` and taken in turn into train
    until it holds 70 % of the class's images, then val until 85 %, the rest test. scikit-learn's group
    splitters either ignore the class or only give equal folds, hence this small assignment.
    """
    train, val = FRACTIONS["train"], FRACTIONS["train"] + FRACTIONS["val"]
    return _subjects_by_class(kept, seed, {"train": train, "val": val, "test": 1.0})


def fold_rotation_split(kept: pd.DataFrame, seed: int, test_fold: str) -> pd.Series:
    """One rotation of grouped cross-validation over the organisers' folds: every image of ``test_fold`` (a
    source in ``layout.TRAINING_FOLDS``) is test; the other folds' images are split by subject into train and val
    in the patient split's ratio (70 : 15), stratified by class as :func:`subject_disjoint_split` does.

    The organisers made the folds subject-disjoint ("a subject in fold 1 is only in fold 1"); a subject found in
    two folds is a UserError, since the rotation's test subset would then share it with training."""
    shared = kept.groupby("subject")["source"].nunique()
    if (shared > 1).any():
        raise UserError(
            "subjects in more than one training fold cannot be held out by fold: "
            f"{list(shared[shared > 1].index)[:5]}; check the archive's training_data folders."
        )
    is_test = kept["source"] == test_fold
    if not is_test.any():
        raise UserError(
            f"the training data has no images of {test_fold}; the folds scheme needs all of {TRAINING_FOLDS}"
        )
    subset = pd.Series("test", index=kept.index, dtype=object)
    subset[~is_test] = _subjects_by_class(kept[~is_test], seed, {"train": ROTATION_TRAIN_FRACTION, "val": 1.0})
    return subset


SPLITTERS = {
    RANDOM_SPLIT: random_image_split,
    PATIENT_SPLIT: subject_disjoint_split,
    **{
        rotation: functools.partial(fold_rotation_split, test_fold=fold)
        for rotation, fold in zip(FOLD_ROTATIONS, TRAINING_FOLDS, strict=True)
    },
}


def split_dataset(kept: pd.DataFrame, external: pd.DataFrame, scheme: str, seed: int) -> pd.DataFrame:
    """Rows of the kept images with their subset, then the labelled external (prelim-phase) images."""
    if scheme not in SPLITTERS:
        raise UserError(f"unknown split {scheme!r}: use one of {list(TRAINING_SPLITS)}")
    kept = kept.reset_index(drop=True)
    split = kept.assign(subset=SPLITTERS[scheme](kept, seed))
    labelled_external = external[external["label"] != ""].assign(subset="external")
    table = pd.concat([split, labelled_external], ignore_index=True)[list(SPLIT_COLUMNS)]
    counts = table.groupby(["subset", "label"]).size().to_dict()
    log.info("%s split: %s", scheme, counts)
    return table


def leakage_report(split: pd.DataFrame) -> pd.DataFrame:
    """Per evaluated subset: how many of its images and subjects also appear in train."""
    train_subjects = set(split.loc[split["subset"] == "train", "subject"])
    rows = []
    for subset in PREDICTED_SUBSETS:
        part = split[split["subset"] == subset]
        leaked = part["subject"].isin(train_subjects)
        rows.append(
            {
                "subset": subset,
                "images": len(part),
                "subjects": part["subject"].nunique(),
                "images_with_subject_in_train": int(leaked.sum()),
                "subjects_in_train": part.loc[leaked, "subject"].nunique(),
                "leaked_fraction": round(float(leaked.mean()), 4) if len(part) else 0.0,
            }
        )
    return pd.DataFrame(rows)
