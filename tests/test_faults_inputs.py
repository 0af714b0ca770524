"""Faults in the workflow's inputs, injected for real (issue #13, items 6 to 8): a damaged prelim labels CSV,
file names that are not UTF-8 and whole folders of wrong files in the dataset; zip bombs and symbolic links
in the archive; and the Kaggle client asked to print its requests, run with throw-away credentials while
the network is blocked."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import run_snakemake
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, write_tsv
from leukemia_dtl.core.vocabulary import DATASET_DIR
from leukemia_dtl.data.archive import C_NMC_ARCHIVE_LIMITS, ArchiveLimits, extract_archive
from leukemia_dtl.data.inventory import build_inventory, require_few_rejected
from leukemia_dtl.data.layout import FINAL_DIR, PRELIM_DIR, PRELIM_LABELS, listing_digest

# A port nothing listens on: every request through this proxy fails at once, as on a machine offline.
BLOCKED_NETWORK = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}


@pytest.fixture
def dataset(demo_dataset, tmp_path) -> Path:
    """A private copy of the demo's C-NMC tree, to damage."""
    root = tmp_path / DATASET_DIR
    shutil.copytree(demo_dataset, root)
    return root


def _labels(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / PRELIM_LABELS, dtype=str)


# Item 6: the inventory's inputs.


def test_an_image_listed_twice_in_the_labels_csv_is_an_error_naming_the_file_and_lines(dataset):
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
def test_an_empty_cell_in_the_labels_csv_is_an_error_naming_the_line_and_column(dataset, column):
    labels = _labels(dataset)
    labels.loc[1, column] = ""
    labels.to_csv(dataset / PRELIM_LABELS, index=False)
    with pytest.raises(UserError, match=rf"labels\.csv has empty cells: line 3 \({column}\)"):
        build_inventory(dataset)


def _write_bmp(path: bytes) -> None:
    with open(path, "wb") as handle:
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(handle, format="BMP")


def test_file_names_that_are_not_utf8_are_rejected_with_their_reason(dataset, tmp_path):
    """Linux lets a name hold any bytes: each such image is listed, escaped, among the rejected files,
    and every other image is kept."""
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


def test_many_rejected_files_stop_the_inventory_with_a_summary(dataset):
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


@pytest.mark.workflow
def test_the_inventory_rule_stops_without_output_when_the_config_limit_is_passed(dataset, tmp_path):
    """The limit reaches the rule through params: the inventory job fails and writes neither table."""
    for image in (dataset / "training_data/fold_1/all").iterdir():
        image.rename(image.with_suffix(".BMP.bak"))
    overlay = tmp_path / "directory.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"source": "directory", "directory": str(dataset.parent)}}))
    workdir = tmp_path / "run"
    result = run_snakemake(
        "results/data/inventory.tsv", "--cores", "1", "--configfile", "config/demo.yaml", overlay, workdir=workdir
    )
    assert result.returncode != 0
    log = (workdir / "results/logs/inventory.log").read_text()
    assert "files were rejected" in log and "fold_1" in log
    assert not (workdir / "results/data/inventory.tsv").exists()
    assert not (workdir / "results/data/rejected.tsv").exists()


# Item 7: archives.


def _listing(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def _refused_without_a_trace(archive: Path, limits: ArchiveLimits = C_NMC_ARCHIVE_LIMITS) -> str:
    """Extract ``archive`` beside itself; assert it is refused before anything is written; the message."""
    before = _listing(archive.parent)
    with pytest.raises(UserError) as error:
        extract_archive(archive, archive.parent / "extracted", limits)
    assert _listing(archive.parent) == before
    return str(error.value)


def _write_bomb(archive: Path) -> None:
    """20 MB of zeros behind a BMP header, deflated to about 20 KB: a thousandfold, as zip bombs expand."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        bomb.writestr(f"{DATASET_DIR}/training_data/fold_0/all/UID_1_1_1_all.bmp", b"BM" + b"\0" * 20_000_000)
    assert archive.stat().st_size < 50_000


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    archive = tmp_path / "bomb.zip"
    _write_bomb(archive)
    message = _refused_without_a_trace(archive)
    assert "would expand to 0.0 GB in 1 entries" in message and "times its own size" in message


@pytest.mark.workflow
def test_the_extract_rule_refuses_a_zip_bomb_and_writes_nothing(tmp_path):
    archive = tmp_path / "leukemia-classification.zip"
    _write_bomb(archive)
    overlay = tmp_path / "archive.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"source": "archive", "archive": str(archive)}}))
    workdir = tmp_path / "run"
    result = run_snakemake(
        "results/data/archive.sha256", "--cores", "1", "--configfile", "config/demo.yaml", overlay, workdir=workdir
    )
    assert result.returncode != 0
    assert "times its own size" in (workdir / "results/logs/extract_archive.log").read_text()
    assert list((workdir / "results/data").glob("**/*")) == []


@pytest.mark.parametrize(
    "limits, entries",
    [(ArchiveLimits(max_total_bytes=100_000), 3), (ArchiveLimits(max_entries=10), 11)],
    ids=["total size", "entry count"],
)
def test_archives_past_the_size_or_entry_limit_are_refused(tmp_path, limits, entries):
    archive = tmp_path / "big.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as big:
        for number in range(entries):
            big.writestr(f"{DATASET_DIR}/f{number}.bmp", rng.bytes(40_000))
    assert f"in {entries} entries" in _refused_without_a_trace(archive, limits)


def test_the_default_limits_let_the_real_archive_through():
    """FACTS.md: 15,114 BMPs of about 608 KB (9.2 GB) plus folders and the labels CSV; the zip compresses
    them a few times at most, while a zip bomb expands about a thousandfold."""
    assert C_NMC_ARCHIVE_LIMITS.max_total_bytes > 3 * 15_114 * 608_000
    assert C_NMC_ARCHIVE_LIMITS.max_entries > 3 * 15_200
    assert 20 <= C_NMC_ARCHIVE_LIMITS.max_ratio <= 200


def test_a_symbolic_link_entry_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    link = zipfile.ZipInfo(f"{DATASET_DIR}/training_data/fold_0/all/UID_1_1_1_all.bmp")
    link.create_system = 3  # Unix: the upper 16 bits of external_attr are st_mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "w") as linked:
        linked.writestr(f"{DATASET_DIR}/validation_data/readme.txt", b"fine")
        linked.writestr(link, "/home/someone/.ssh/id_rsa")
    assert "UID_1_1_1_all.bmp', a symbolic link" in _refused_without_a_trace(archive)


# Item 8: Kaggle credentials.

THROWAWAY_USER, THROWAWAY_KEY = "throwaway-user", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
THROWAWAY_TOKEN = "KGAT_throwaway0123456789abcdef0123456789"
SECRETS = [
    THROWAWAY_KEY,
    base64.b64encode(f"{THROWAWAY_USER}:{THROWAWAY_KEY}".encode()).decode(),  # the Basic auth header
    THROWAWAY_TOKEN,
]


@pytest.mark.workflow
@pytest.mark.parametrize(
    "credential", ["legacy key in kaggle.json", "token in KAGGLE_API_TOKEN", "token with a stray carriage return"]
)
def test_no_kaggle_credential_reaches_the_console_logs_or_results(tmp_path, monkeypatch, credential):
    """The client prints each request with its headers when VERBOSE or VERBOSE_OUTPUT is set: with a legacy
    key it signs in offline and prints the download request (Basic auth); with a token it prints the token
    check. A token with a stray carriage return (exported from a file saved on Windows) makes the request
    fail with an error that quotes the header; offline, the client's plain-HTTP local endpoint shows that
    error before connecting. The download_kaggle rule runs for real; no secret may appear anywhere."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    for variable in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_ENVIRONMENT"):
        monkeypatch.delenv(variable, raising=False)
    if credential == "legacy key in kaggle.json":
        key_file = home / ".kaggle" / "kaggle.json"
        key_file.write_text(json.dumps({"username": THROWAWAY_USER, "key": THROWAWAY_KEY}))
        key_file.chmod(0o600)
    elif credential == "token in KAGGLE_API_TOKEN":
        monkeypatch.setenv("KAGGLE_API_TOKEN", THROWAWAY_TOKEN)
    else:
        monkeypatch.setenv("KAGGLE_API_TOKEN", THROWAWAY_TOKEN + "\r")
        monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    for variable, value in {"HOME": str(home), "KAGGLE_CONFIG_DIR": str(home / ".kaggle"), **BLOCKED_NETWORK}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("VERBOSE", "1")
    monkeypatch.setenv("VERBOSE_OUTPUT", "true")
    overlay = tmp_path / "kaggle.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"source": "kaggle"}}))
    workdir = tmp_path / "run"

    result = run_snakemake(
        "results/data/download/leukemia-classification.zip",
        "--cores",
        "1",
        "--configfile",
        "config/demo.yaml",
        overlay,
        workdir=workdir,
    )

    console = result.stdout + result.stderr
    log = (workdir / "results/logs/download_kaggle.log").read_text()
    assert result.returncode != 0 and "Could not download the Kaggle dataset" in log
    written = {path: path.read_bytes() for path in workdir.rglob("*") if path.is_file()}
    for secret in SECRETS:
        assert secret not in console
        assert [path for path, content in written.items() if secret.encode() in content] == []
    assert not (workdir / "results/data/download/leukemia-classification.zip").exists()
