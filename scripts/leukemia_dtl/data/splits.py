"""The paper's subset exclusion, the two split schemes and the subject-leakage report."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import PATIENT_SPLIT, PREDICTED_SUBSETS, RANDOM_SPLIT, SPLIT_COLUMNS
from leukemia_dtl.data.layout import TRAINING_FOLDS

log = logging.getLogger(__name__)

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


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


def subject_disjoint_split(kept: pd.DataFrame, seed: int) -> pd.Series:
    """Subject-disjoint, label-stratified split with about 70/15/15 of each class's images.

    C-NMC subjects are either patients (all ALL) or healthy (all HEM), so stratifying subjects by class
    stratifies images. Within each class, subjects are shuffled with ``seed`` and taken in turn into train
    until it holds 70 % of the class's images, then val until 85 %, the rest test. scikit-learn's group
    splitters either ignore the class or only give equal folds, hence this small assignment.
    """
    mixed = kept.groupby("subject")["label"].nunique()
    if (mixed > 1).any():
        raise UserError(
            f"subjects with both ALL and HEM images cannot be split by subject: {list(mixed[mixed > 1].index)}"
        )
    rng = np.random.default_rng(seed)
    subset_of_subject = {}
    for label, images in kept.groupby("label"):
        sizes = images["subject"].value_counts().sort_index()
        subjects = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        if len(subjects) < 3:
            raise UserError(f"the patient split needs at least 3 {label} subjects, found {len(subjects)}")
        covered_before = (sizes[subjects].cumsum() - sizes[subjects]) / sizes.sum()
        assigned = np.where(
            covered_before < FRACTIONS["train"],
            "train",
            np.where(covered_before < FRACTIONS["train"] + FRACTIONS["val"], "val", "test"),
        )
        # Small classes can leave val or test empty; give each the last subject(s) so every subset has both classes.
        assigned[-1] = "test"
        if "val" not in assigned[:-1]:
            assigned[-2] = "val"
        subset_of_subject.update(zip(subjects, assigned, strict=True))
    return kept["subject"].map(subset_of_subject)


SPLITTERS = {RANDOM_SPLIT: random_image_split, PATIENT_SPLIT: subject_disjoint_split}


def split_dataset(kept: pd.DataFrame, external: pd.DataFrame, scheme: str, seed: int) -> pd.DataFrame:
    """Rows of the kept images with their subset, then the labelled external (prelim-phase) images."""
    if scheme not in SPLITTERS:
        raise UserError(f"unknown split scheme {scheme!r}: use one of {sorted(SPLITTERS)}")
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
