"""Getting the C-NMC archive: Kaggle download, checksums and safe extraction."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import atomic_path
from leukemia_dtl.core.vocabulary import DATASET_DIR

log = logging.getLogger(__name__)

_NO_KAGGLE = (
    "Could not download the Kaggle dataset {dataset}: {reason}. "
    "Either give the Kaggle client credentials (run `kaggle auth login`, or set KAGGLE_API_TOKEN, or save a "
    "token to ~/.kaggle/access_token, or a legacy ~/.kaggle/kaggle.json with mode 600) on a machine with "
    "internet access and rerun, or download the archive yourself from "
    "https://www.kaggle.com/datasets/{dataset} and set `data.source: archive` with `data.archive: <path to the "
    "zip>` (or `data.source: directory` with `data.directory: <folder holding {root}/>`) in the config."
)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(archive: str | Path, checksum_file: str | Path) -> str:
    checksum = sha256_of(archive)
    with atomic_path(checksum_file) as tmp:
        tmp.write_text(f"{checksum}  {Path(archive).name}\n")
    log.info("sha256 %s  %s", checksum, archive)
    return checksum


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def download_kaggle_dataset(dataset: str, archive: str | Path) -> None:
    """Download ``dataset`` as a zip to ``archive`` with the kaggle package's API."""
    archive = Path(archive)
    try:
        # Without credentials the client prints a long help text (already on import, which authenticates)
        # and calls exit(1); the message below says it shorter.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except SystemExit:
        raise UserError(
            _NO_KAGGLE.format(dataset=dataset, reason="no Kaggle credentials found", root=DATASET_DIR)
        ) from None
    except Exception as error:  # token checks go over the network: offline this is a connection error
        raise UserError(_NO_KAGGLE.format(dataset=dataset, reason=_first_line(error), root=DATASET_DIR)) from None
    with atomic_path(archive) as tmp_archive:
        download_dir = tmp_archive.parent / f".{archive.name}.download"
        shutil.rmtree(download_dir, ignore_errors=True)
        try:
            api.dataset_download_files(dataset, path=str(download_dir), quiet=False, force=True)
        except (Exception, SystemExit) as error:
            raise UserError(_NO_KAGGLE.format(dataset=dataset, reason=_first_line(error), root=DATASET_DIR)) from None
        finally:
            downloaded = sorted(download_dir.glob("*.zip")) if download_dir.exists() else []
            if downloaded:
                downloaded[0].replace(tmp_archive)
            shutil.rmtree(download_dir, ignore_errors=True)
        if not downloaded:
            raise UserError(f"The Kaggle client finished but left no zip file for {dataset}; rerun the rule.")


def _checked_members(archive: zipfile.ZipFile, archive_path: Path) -> list[zipfile.ZipInfo]:
    members = []
    for member in archive.infolist():
        name = PurePosixPath(member.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
            raise UserError(
                f"{archive_path} holds the entry {member.filename!r}, which would be written outside the "
                f"extraction folder. Refusing to extract it: use the original archive from Kaggle."
            )
        members.append(member)
    return members


def extract_archive(archive_path: str | Path, destination: str | Path) -> Path:
    """Extract the C-NMC archive into ``destination`` and return the dataset root, ``destination/C-NMC_Leukemia``.

    Extraction goes to a temporary folder first, so a failure never leaves a half-filled destination.
    """
    archive_path, destination = Path(archive_path), Path(destination)
    if not archive_path.is_file():
        raise UserError(f"The archive {archive_path} does not exist: check data.archive in the config.")
    if not zipfile.is_zipfile(archive_path):
        raise UserError(
            f"{archive_path} is not a zip archive (or is truncated): download it again from Kaggle "
            f"and check its sha256."
        )
    staging = destination.parent / f".{destination.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = _checked_members(archive, archive_path)
            log.info("extracting %d entries from %s", len(members), archive_path)
            for done, member in enumerate(members, start=1):
                archive.extract(member, staging)
                if done % 2000 == 0:
                    log.info("extracted %d/%d entries", done, len(members))
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(
            f"{archive_path} is damaged ({type(error).__name__}: {error}): download it again and check its sha256."
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not (staging / DATASET_DIR).is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(
            f"{archive_path} has no {DATASET_DIR}/ folder at its top level: it is not the C-NMC 2019 archive "
            f"(Kaggle andrewmvd/leukemia-classification)."
        )
    shutil.rmtree(destination, ignore_errors=True)
    staging.replace(destination)
    return destination / DATASET_DIR
