import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, write_tsv
from leukemia_dtl.core.vocabulary import INVENTORY_COLUMNS
from leukemia_dtl.data.inventory import build_inventory, require_few_rejected
from leukemia_dtl.data.layout import FINAL_DIR, PRELIM_DIR, PRELIM_LABELS, listing_digest, parse_training_filename


@pytest.mark.parametrize(
    "name, subject, image, cell, label",
    [
        ("UID_11_10_1_all.bmp", "11", 10, 1, "ALL"),
        ("UID_H10_14_1_hem.bmp", "H10", 14, 1, "HEM"),
        ("UID_h3_1_1_hem.bmp", "H3", 1, 1, "HEM"),
        ("UID_57_29_1_all.bmp", "57", 29, 1, "ALL"),
    ],
)
def test_parse_training_filename_real_style_names(name, subject, image, cell, label):
    parsed = parse_training_filename(name)
    assert (parsed.subject, parsed.image, parsed.cell, parsed.label) == (subject, image, cell, label)


def test_lower_and_upper_case_h_are_the_same_subject():
    assert (
        parse_training_filename("UID_h3_1_1_hem.bmp").subject == parse_training_filename("UID_H3_2_1_hem.bmp").subject
    )


@pytest.mark.parametrize("name", ["UID_11_10_all.bmp", "UID_11_10_1_blast.bmp", "img_001.bmp", "UID_11_10_1_all.png"])
def test_parse_training_filename_rejects_other_names(name):
    with pytest.raises(ValueError, match="UID_<subject>"):
        parse_training_filename(name)


def test_inventory_of_demo_layout(demo_dataset):
    inventory, rejected = build_inventory(demo_dataset, workers=2)
    assert list(inventory.columns) == list(INVENTORY_COLUMNS)
    assert set(inventory["source"]) == {"fold_0", "fold_1", "fold_2", "prelim", "final"}
    assert set(inventory.loc[inventory["source"] != "final", "label"]) == {"ALL", "HEM"}
    assert (inventory.loc[inventory["source"] == "final", "label"] == "").all()
    # Subjects are normalised to upper case, so no lower-case h survives.
    assert not inventory["subject"].str.startswith("h").any()
    assert inventory.loc[inventory["label"] == "HEM", "subject"].str.startswith("H").all()
    # Prelim subjects come from the CSV's Patient_ID and are not training subjects.
    training_subjects = set(inventory.loc[inventory["source"].str.startswith("fold"), "subject"])
    prelim = inventory[inventory["source"] == "prelim"]
    assert len(prelim) > 0 and not set(prelim["subject"]) & training_subjects
    # The demo archive carries one truncated BMP: reported, not fatal.
    assert len(rejected) == 1 and "cannot decode" in rejected["reason"].iloc[0]


def _copy_dataset(demo_dataset, tmp_path):
    root = tmp_path / "C-NMC_Leukemia"
    shutil.copytree(demo_dataset, root)
    return root


def test_corrupt_image_and_unparsable_name_are_reported_not_fatal(demo_dataset, tmp_path):
    root = _copy_dataset(demo_dataset, tmp_path)
    before, _ = build_inventory(root)
    victim = root / before.loc[before["source"] == "fold_1", "path"].iloc[0]
    victim.write_bytes(b"BM" + b"\0" * 40)
    odd = root / "training_data/fold_2/all/scan_0001.bmp"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(odd)

    inventory, rejected = build_inventory(root, workers=2)

    reasons = dict(zip(rejected["path"], rejected["reason"], strict=True))
    assert "cannot decode" in reasons[victim.relative_to(root).as_posix()]
    assert "is not UID_" in reasons["training_data/fold_2/all/scan_0001.bmp"]
    assert len(inventory) == len(before) - 1
    assert victim.relative_to(root).as_posix() not in set(inventory["path"])


def test_image_in_the_wrong_class_folder_is_rejected(demo_dataset, tmp_path):
    root = _copy_dataset(demo_dataset, tmp_path)
    source = next((root / "training_data/fold_0/hem").glob("*.bmp"))
    source.rename(root / "training_data/fold_0/all" / source.name)
    _, rejected = build_inventory(root)
    assert rejected["reason"].str.contains("stored under all/").sum() == 1


def test_prelim_label_file_problems_are_reported(demo_dataset, tmp_path):
    root = _copy_dataset(demo_dataset, tmp_path)
    labels_csv = root / "validation_data/C-NMC_test_prelim_phase_data_labels.csv"
    labels = pd.read_csv(labels_csv, dtype=str)
    labels.iloc[1:].to_csv(labels_csv, index=False)  # first image loses its label row
    (root / "validation_data/C-NMC_test_prelim_phase_data" / labels.iloc[2]["new_names"]).unlink()
    _, rejected = build_inventory(root)
    assert rejected["reason"].str.contains("not listed in").sum() == 1
    assert rejected["reason"].str.contains("but missing").sum() == 1


def test_folder_without_the_layout_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not have the C-NMC layout"):
        build_inventory(tmp_path)


def test_a_symlinked_class_folder_is_followed(demo_dataset, tmp_path):
    """A user's copy whose class folder links to where the images really are loses no image."""
    root = _copy_dataset(demo_dataset, tmp_path)
    expected, expected_rejected = build_inventory(root)
    hem = root / "training_data" / "fold_0" / "hem"
    shutil.move(hem, tmp_path / "elsewhere")
    hem.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    inventory, rejected = build_inventory(root)
    assert (inventory["path"].str.startswith("training_data/fold_0/hem/")).sum() > 0
    pd.testing.assert_frame_equal(inventory, expected)
    pd.testing.assert_frame_equal(rejected, expected_rejected)


def test_a_symlink_loop_is_refused_naming_the_link(demo_dataset, tmp_path):
    root = _copy_dataset(demo_dataset, tmp_path)
    (root / "training_data" / "fold_1" / "all" / "loop").symlink_to(root / "training_data", target_is_directory=True)
    with pytest.raises(UserError, match=r"fold_1/all/loop/fold_1 leads to .* already listed"):
        build_inventory(root)


# Damaged inventory inputs (issue #13, item 6): a prelim labels CSV listing an image twice or with an empty
# cell, file names that are not UTF-8, and whole folders of wrong files.


def _labels(root):
    return pd.read_csv(root / PRELIM_LABELS, dtype=str)


def test_an_image_listed_twice_in_the_labels_csv_is_an_error_naming_the_file_and_lines(demo_dataset, tmp_path):
    dataset = _copy_dataset(demo_dataset, tmp_path)
    labels = _labels(dataset)
    twice = labels.iloc[3].copy()
    twice["labels"] = "0" if twice["labels"] == "1" else "1"  # the later row used to win silently
    pd.concat([labels, twice.to_frame().T]).to_csv(dataset / PRELIM_LABELS, index=False)
    with pytest.raises(UserError) as error:
        build_inventory(dataset)
    message = str(error.value)
    assert str(dataset / PRELIM_LABELS) in message
    assert f"{twice['new_names']} on lines 5, {len(labels) + 2}" in message


@pytest.mark.parametrize("column", ["Patient_ID", "new_names", "labels"])
def test_an_empty_cell_in_the_labels_csv_is_an_error_naming_the_line_and_column(demo_dataset, tmp_path, column):
    dataset = _copy_dataset(demo_dataset, tmp_path)
    labels = _labels(dataset)
    labels.loc[1, column] = ""
    labels.to_csv(dataset / PRELIM_LABELS, index=False)
    with pytest.raises(UserError, match=rf"labels\.csv has empty cells: line 3 \({column}\)"):
        build_inventory(dataset)


def _write_bmp(path: bytes) -> None:
    with open(path, "wb") as handle:
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(handle, format="BMP")


def test_file_names_that_are_not_utf8_are_rejected_with_their_reason(demo_dataset, tmp_path):
    """Linux lets a name hold any bytes: each such image is listed, escaped, among the rejected files,
    and every other image is kept."""
    dataset = _copy_dataset(demo_dataset, tmp_path)
    expected, _ = build_inventory(dataset)
    folders = ["training_data/fold_0/all", PRELIM_DIR, FINAL_DIR]
    for folder in folders:
        _write_bmp(os.path.join(os.fsencode(dataset / folder), b"UID_1_\xff\xfe_1_all.bmp"))

    inventory, rejected = build_inventory(dataset, workers=2)

    pd.testing.assert_frame_equal(inventory, expected)
    not_utf8 = rejected[rejected["reason"].str.contains("not valid UTF-8")]
    assert sorted(not_utf8["path"]) == sorted(f"{folder}/UID_1_\\xff\\xfe_1_all.bmp" for folder in folders)
    write_tsv(rejected, tmp_path / "rejected.tsv")
    assert read_tsv(tmp_path / "rejected.tsv").equals(rejected)
    # The digest the workflow takes of a data.directory tree at start-up lists such names too.
    assert listing_digest(dataset) != listing_digest(tmp_path / "nothing")


def test_many_rejected_files_stop_the_inventory_with_a_summary(demo_dataset, tmp_path):
    dataset = _copy_dataset(demo_dataset, tmp_path)
    for image in (dataset / "training_data/fold_2/hem").iterdir():
        image.rename(image.with_suffix(".png"))  # a copy saved with the wrong extension
    inventory, rejected = build_inventory(dataset)
    with pytest.raises(UserError) as error:
        require_few_rejected(inventory, rejected, max_rejected_fraction=0.01)
    message = str(error.value)
    total = len(inventory) + len(rejected)
    assert f"{len(rejected)} of {total} files were rejected" in message
    assert f"fold_2 {len(rejected) - 1}" in message  # and the demo's one truncated BMP in fold_0
    assert f"{len(rejected) - 1} × file name '…' is not UID_<subject>" in message
    assert "1 × cannot decode" in message and "data.max_rejected_fraction" in message
    require_few_rejected(inventory, rejected, max_rejected_fraction=0.5)
