import numpy as np
import pandas as pd
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.data.splits import (
    exclude_subsets,
    leakage_report,
    random_image_split,
    split_dataset,
    subject_disjoint_split,
)

# Per-fold class counts of the real C-NMC training folds, as in the Kaggle archive (andrewmvd/leukemia-classification).
REAL_FOLD_COUNTS = {"fold_0": (2397, 1130), "fold_1": (2418, 1163), "fold_2": (2457, 1096)}


def real_sized_inventory() -> pd.DataFrame:
    """An inventory with the real per-fold class counts; ~60 images per subject as on C-NMC."""
    rows = []
    subject_number = 0
    for fold, (n_all, n_hem) in REAL_FOLD_COUNTS.items():
        for label, count in (("ALL", n_all), ("HEM", n_hem)):
            for index in range(count):
                if index % 60 == 0:
                    subject_number += 1
                subject = f"{'H' if label == 'HEM' else ''}{subject_number}"
                rows.append(
                    {
                        "path": f"training_data/{fold}/{label.lower()}/UID_{subject}_{index}_1_{label.lower()}.bmp",
                        "subject": subject,
                        "label": label,
                        "source": fold,
                    }
                )
    rows += [
        {
            "path": f"validation_data/p/{i}.bmp",
            "subject": f"P{i % 7}",
            "label": "ALL" if i % 3 else "HEM",
            "source": "prelim",
        }
        for i in range(1, 41)
    ]
    rows += [{"path": f"testing_data/f/{i}.bmp", "subject": "", "label": "", "source": "final"} for i in range(1, 11)]
    return pd.DataFrame(rows)


def test_exclusion_keeps_exactly_the_training_folds():
    kept, excluded, summary = exclude_subsets(real_sized_inventory())
    assert len(kept) == 10_661
    assert (kept["label"] == "ALL").sum() == 7_272 and (kept["label"] == "HEM").sum() == 3_389
    assert set(excluded["source"]) == {"prelim", "final"} and len(excluded) == 50
    assert summary["images"].sum() == 10_711
    assert summary.loc[(summary["status"] == "excluded") & (summary["source"] == "final"), "label"].tolist() == [
        "unlabelled"
    ]


def test_random_split_reproduces_the_papers_counts_and_stratifies():
    kept, _, _ = exclude_subsets(real_sized_inventory())
    subset = random_image_split(kept, seed=123)
    assert subset.value_counts().to_dict() == {"train": 7_462, "test": 1_600, "val": 1_599}
    overall_all = (kept["label"] == "ALL").mean()
    for name in ("train", "val", "test"):
        assert (kept.loc[subset == name, "label"] == "ALL").mean() == pytest.approx(overall_all, abs=0.002)


def test_random_split_depends_on_the_seed_only():
    kept, _, _ = exclude_subsets(real_sized_inventory())
    first = random_image_split(kept, seed=123)
    assert first.equals(random_image_split(kept, seed=123))
    assert not first.equals(random_image_split(kept, seed=124))


def test_random_split_leaks_subjects_and_patient_split_does_not():
    inventory = real_sized_inventory()
    kept, excluded, _ = exclude_subsets(inventory)
    random_report = leakage_report(split_dataset(kept, excluded, "random", 123)).set_index("subset")
    patient_split = split_dataset(kept, excluded, "patient", 123)
    patient_report = leakage_report(patient_split).set_index("subset")
    assert random_report.loc["test", "images_with_subject_in_train"] > 1_500
    assert (patient_report["images_with_subject_in_train"] == 0).all()
    subjects_by_subset = patient_split[patient_split["subset"] != "external"].groupby("subset")["subject"].apply(set)
    assert not subjects_by_subset["train"] & subjects_by_subset["val"]
    assert not subjects_by_subset["train"] & subjects_by_subset["test"]
    assert not subjects_by_subset["val"] & subjects_by_subset["test"]


def test_patient_split_is_close_to_70_15_15_and_stratified():
    kept, _, _ = exclude_subsets(real_sized_inventory())
    subset = subject_disjoint_split(kept, seed=123)
    fractions = subset.value_counts(normalize=True)
    assert fractions["train"] == pytest.approx(0.70, abs=0.03)
    assert fractions["val"] == pytest.approx(0.15, abs=0.03)
    assert fractions["test"] == pytest.approx(0.15, abs=0.03)
    for name in ("train", "val", "test"):
        assert set(kept.loc[subset == name, "label"]) == {"ALL", "HEM"}


def test_split_file_lists_labelled_external_images_only():
    kept, excluded, _ = exclude_subsets(real_sized_inventory())
    split = split_dataset(kept, excluded, "random", 123)
    assert list(split.columns) == ["path", "subject", "label", "subset"]
    assert (split["subset"] == "external").sum() == 40
    assert not split["path"].str.startswith("testing_data").any()
    assert split["path"].is_unique


def test_patient_split_on_tiny_classes_still_fills_every_subset():
    rows = [
        {"path": f"{s}_{i}", "subject": s, "label": label, "source": "fold_0"}
        for s, label in [("1", "ALL"), ("2", "ALL"), ("3", "ALL"), ("H4", "HEM"), ("H5", "HEM"), ("H6", "HEM")]
        for i in range(np.random.default_rng(len(s)).integers(3, 9))
    ]
    kept = pd.DataFrame(rows)
    subset = subject_disjoint_split(kept, seed=0)
    for name in ("train", "val", "test"):
        assert set(kept.loc[subset == name, "label"]) == {"ALL", "HEM"}


@pytest.mark.parametrize("rotation, fold", [("fold0", "fold_0"), ("fold1", "fold_1"), ("fold2", "fold_2")])
def test_a_fold_rotation_tests_on_its_fold_and_trains_on_the_others_by_subject(rotation, fold):
    kept, excluded, _ = exclude_subsets(real_sized_inventory())
    split = split_dataset(kept, excluded, rotation, seed=123)
    held_out = split[split["subset"] != "external"]
    # Test is exactly the fold, whole; no subject of it is in train or val, nor one of val in train.
    assert set(held_out.loc[held_out["subset"] == "test", "path"]) == set(kept.loc[kept["source"] == fold, "path"])
    subjects = {subset: set(frame["subject"]) for subset, frame in held_out.groupby("subset")}
    assert not subjects["test"] & (subjects["train"] | subjects["val"]) and not subjects["train"] & subjects["val"]
    # The other two folds in the patient split's 70 : 15 ratio, per class, within one subject (60 images).
    for label, frame in held_out[held_out["subset"] != "test"].groupby("label"):
        share = (frame["subset"] == "train").mean()
        assert abs(share - 70 / 85) < 60 / len(frame), (label, share)
    external = split.loc[split["subset"] == "external", "path"].tolist()
    assert external == excluded.loc[excluded["source"] == "prelim", "path"].tolist()


def test_the_three_rotations_test_every_training_image_once():
    kept, excluded, _ = exclude_subsets(real_sized_inventory())
    tested = pd.concat(
        [split[split["subset"] == "test"] for split in (split_dataset(kept, excluded, f"fold{k}", 1) for k in range(3))]
    )
    assert sorted(tested["path"]) == sorted(kept["path"])


def test_a_subject_in_two_folds_cannot_be_held_out_by_fold():
    kept, excluded, _ = exclude_subsets(real_sized_inventory())
    kept.loc[kept.index[0], "subject"] = kept.loc[kept["source"] == "fold_1", "subject"].iloc[0]
    with pytest.raises(UserError, match="subjects in more than one training fold"):
        split_dataset(kept, excluded, "fold0", seed=0)
