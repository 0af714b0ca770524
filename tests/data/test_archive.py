import json
import logging
import re
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import DATASET_DIR
from leukemia_dtl.data.archive import (
    C_NMC_ARCHIVE_LIMITS,
    ArchiveLimits,
    download_kaggle_dataset,
    download_progress,
    extract_archive,
    write_checksum,
)
from zip_bombs import write_zip_bomb


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("evil", ["../escape.txt", "C-NMC_Leukemia/../../escape.txt", "/etc/escape.txt"])
def test_entries_that_would_leave_the_target_are_refused(tmp_path, evil):
    archive = _zip(tmp_path / "evil.zip", {"C-NMC_Leukemia/training_data/x.bmp": b"x", evil: b"owned"})
    with pytest.raises(UserError, match="outside the extraction folder"):
        extract_archive(archive, tmp_path / "out" / "extracted")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out" / "extracted").exists()


def test_not_a_zip_is_a_clear_error(tmp_path):
    bogus = tmp_path / "download.zip"
    bogus.write_text("<html>Kaggle login page</html>")
    with pytest.raises(UserError, match="not a zip archive"):
        extract_archive(bogus, tmp_path / "extracted")


def test_truncated_zip_is_a_clear_error(tmp_path):
    archive = _zip(tmp_path / "full.zip", {f"C-NMC_Leukemia/f{i}.bmp": bytes(range(256)) * 200 for i in range(20)})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UserError, match=r"not a zip archive|damaged"):
        extract_archive(truncated, tmp_path / "extracted")
    assert not (tmp_path / "extracted").exists()


def test_archive_without_the_dataset_folder_is_refused(tmp_path):
    archive = _zip(tmp_path / "other.zip", {"cats/cat.jpg": b"meow"})
    with pytest.raises(UserError, match="no C-NMC_Leukemia/ folder"):
        extract_archive(archive, tmp_path / "extracted")


def test_extraction_returns_the_dataset_root_and_replaces_old_content(tmp_path):
    archive = _zip(tmp_path / "ok.zip", {"C-NMC_Leukemia/training_data/fold_0/all/UID_1_1_1_all.bmp": b"bmp"})
    (tmp_path / "extracted").mkdir()
    (tmp_path / "extracted" / "stale.txt").write_text("old")
    root = extract_archive(archive, tmp_path / "extracted")
    assert root == tmp_path / "extracted" / "C-NMC_Leukemia"
    assert (root / "training_data/fold_0/all/UID_1_1_1_all.bmp").read_bytes() == b"bmp"
    assert not (tmp_path / "extracted" / "stale.txt").exists()


def test_checksum_file_matches_sha256sum_format(tmp_path):
    data = tmp_path / "a.zip"
    data.write_bytes(b"abc")
    write_checksum(data, tmp_path / "a.zip.sha256")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2's "abc"
    assert (tmp_path / "a.zip.sha256").read_text() == f"{expected}  a.zip\n"


def test_kaggle_without_credentials_says_what_to_do(tmp_path, monkeypatch, capsys):
    for variable in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    with pytest.raises(UserError) as error:
        download_kaggle_dataset("andrewmvd/leukemia-classification", tmp_path / "cnmc.zip")
    message = str(error.value)
    assert "no Kaggle credentials" in message
    assert "data.source: archive" in message and "kaggle auth login" in message
    assert not (tmp_path / "cnmc.zip").exists()
    assert "Authentication required" not in capsys.readouterr().out


def test_kaggle_offline_with_credentials_says_what_to_do(tmp_path, monkeypatch):
    """This machine has no route to Kaggle: the real client fails and we explain the alternatives."""
    monkeypatch.setenv("KAGGLE_API_TOKEN", "not-a-real-token")
    with pytest.raises(UserError) as error:
        download_kaggle_dataset("andrewmvd/leukemia-classification", tmp_path / "cnmc.zip")
    assert "Could not download the Kaggle dataset andrewmvd/leukemia-classification" in str(error.value)
    assert "not-a-real-token" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_a_download_in_progress_is_logged_in_bytes_and_percent_without_the_key(tmp_path, monkeypatch, caplog):
    """The client's own progress bar is dropped with the rest of its output: the size of its zip growing on disk,
    against the total its resume marker records, is what the rule's log shows, at most one line per interval."""
    monkeypatch.setenv("KAGGLE_API_TOKEN", "secret-token-1234")
    folder = tmp_path / ".cnmc.zip.download"
    folder.mkdir()
    total = 50 * 2**20
    (folder / "leukemia-classification.zip.kaggle-partial").write_text(
        json.dumps({"validator": '"etag-1"', "size": total})
    )
    interval, chunks = 0.2, 10
    started = time.monotonic()
    with (
        caplog.at_level(logging.INFO, logger="leukemia_dtl"),
        download_progress(folder, interval=interval),
        open(folder / "leukemia-classification.zip", "wb") as partial,
    ):
        for _ in range(chunks):
            partial.write(bytes(total // chunks))
            partial.flush()
            time.sleep(0.1)
    elapsed = time.monotonic() - started

    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("downloading:")]
    percents = [int(re.search(r"\((\d+) %\)", line).group(1)) for line in lines]
    assert 2 <= len(lines) <= elapsed / interval + 1
    assert percents == sorted(percents) and percents[0] > 0 and percents[-1] <= 100
    assert all(" of 0.05 GB (" in line for line in lines)
    assert "secret-token-1234" not in caplog.text and "etag-1" not in caplog.text


def test_a_token_in_the_kaggle_access_token_file_is_used_and_never_shown(tmp_path, monkeypatch, capsys):
    """The README's third way to give credentials: ~/.kaggle/access_token. The client finds it (the failure is
    this machine's missing route to Kaggle, not missing credentials) and the token appears nowhere."""
    for variable in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "access_token").write_text("KGAT_not-a-real-token-5678\n")
    (tmp_path / ".kaggle" / "access_token").chmod(0o600)
    with pytest.raises(UserError) as error:
        download_kaggle_dataset("andrewmvd/leukemia-classification", tmp_path / "cnmc.zip")
    message = str(error.value)
    assert "Could not download the Kaggle dataset" in message and "no Kaggle credentials" not in message
    printed = capsys.readouterr()
    assert "not-a-real-token-5678" not in message + printed.out + printed.err
    assert not (tmp_path / "cnmc.zip").exists()


# Archives past the limits (issue #13, item 7): zip bombs, too large or too many entries, symbolic links.


def _listing(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def _refused_without_a_trace(archive: Path, limits: ArchiveLimits = C_NMC_ARCHIVE_LIMITS) -> str:
    """Extract ``archive`` beside itself; assert it is refused before anything is written; the message."""
    before = _listing(archive.parent)
    with pytest.raises(UserError) as error:
        extract_archive(archive, archive.parent / "extracted", limits)
    assert _listing(archive.parent) == before
    return str(error.value)


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    archive = tmp_path / "bomb.zip"
    write_zip_bomb(archive)
    message = _refused_without_a_trace(archive)
    assert "would expand to 0.0 GB in 1 entries" in message and "times its own size" in message


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
