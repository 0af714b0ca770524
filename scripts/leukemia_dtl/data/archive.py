"""Getting the C-NMC archive: Kaggle download, checksums and safe extraction."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import stat
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import atomic_path, file_sha256
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


def write_checksum(archive: str | Path, checksum_file: str | Path) -> str:
    checksum = file_sha256(archive)
    with atomic_path(checksum_file) as tmp:
        tmp.write_text(f"{checksum}  {Path(archive).name}\n")
    log.info("sha256 %s  %s", checksum, archive)
    return checksum


def _client_failure(error: BaseException) -> str:
    """What went wrong in the kaggle client, without the exception's text: the text of a request error can
    quote the request's headers (``Invalid header value b'Bearer <token>\\r'`` for a token with a stray
    carriage return), so only the error's type and HTTP status are shown."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    return f"{type(error).__name__} (HTTP {status})" if status else type(error).__name__


@contextlib.contextmanager
def _kaggle_client_output_dropped() -> Iterator[None]:
    """Drop everything the kaggle client prints while it runs.

    With VERBOSE or VERBOSE_OUTPUT set in the environment the client prints every request with its
    headers (``Authorization: Bearer <token>``, or the API key as Basic auth) and bodies (the token it
    checks at login); without credentials it prints a long help text. None of it may reach the console,
    the rule's log or a result, so the client's stdout and stderr go nowhere for its whole run; the
    messages of this module say what happened instead.
    """
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# The kaggle client's record of a download in progress, beside its zip: {"validator": ..., "size": <total bytes>}.
_KAGGLE_PARTIAL_SUFFIX = ".kaggle-partial"


def _bytes_on_disk(folder: Path) -> tuple[int, int | None]:
    """Bytes the client has written to ``folder`` so far, and the total its resume marker records (None without
    one: the server sent no ETag, or the client has not written it yet)."""
    files = [path for path in folder.glob("*") if path.is_file()] if folder.exists() else []
    written = sum(path.stat().st_size for path in files if path.suffix != _KAGGLE_PARTIAL_SUFFIX)
    totals = []
    for marker in (path for path in files if path.suffix == _KAGGLE_PARTIAL_SUFFIX):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            totals.append(int(json.loads(marker.read_text())["size"]))
    return written, (sum(totals) or None)


@contextlib.contextmanager
def download_progress(folder: Path, interval: float = 10.0) -> Iterator[None]:
    """While the body runs, log every ``interval`` seconds how far the download into ``folder`` has got (the
    files growing on disk: the client's own progress bar goes nowhere, see ``_kaggle_client_output_dropped``),
    with the percent where the client recorded the total. Sizes only: nothing the client reads or sends."""
    stop = threading.Event()
    started = time.monotonic()

    def report() -> None:
        reported = 0
        while not stop.wait(interval):
            written, total = _bytes_on_disk(folder)
            if written == reported:
                continue
            reported = written
            rate = written / 2**20 / (time.monotonic() - started)
            share = f" of {total / 1e9:.2f} GB ({100 * written / total:.0f} %)" if total else ""
            log.info("downloading: %.2f GB%s, %.1f MB/s", written / 1e9, share, rate)

    reporter = threading.Thread(target=report, name="download-progress", daemon=True)
    reporter.start()
    try:
        yield
    finally:
        stop.set()
        reporter.join()


def download_kaggle_dataset(dataset: str, archive: str | Path) -> None:
    """Download ``dataset`` as a zip to ``archive`` with the kaggle package's API; no credential is ever
    printed or logged, whatever the environment."""
    archive = Path(archive)
    log.info("downloading the Kaggle dataset %s (about 10 GB for the C-NMC archive)", dataset)
    with atomic_path(archive) as tmp_archive, _kaggle_client_output_dropped():
        api = _authenticated_kaggle_api(dataset)
        download_dir = tmp_archive.parent / f".{archive.name}.download"
        shutil.rmtree(download_dir, ignore_errors=True)
        try:
            with download_progress(download_dir):
                api.dataset_download_files(dataset, path=str(download_dir), quiet=True, force=True)
        except (Exception, SystemExit) as error:
            raise UserError(
                _NO_KAGGLE.format(dataset=dataset, reason=_client_failure(error), root=DATASET_DIR)
            ) from None
        finally:
            downloaded = sorted(download_dir.glob("*.zip")) if download_dir.exists() else []
            if downloaded:
                downloaded[0].replace(tmp_archive)
            shutil.rmtree(download_dir, ignore_errors=True)
        if not downloaded:
            raise UserError(f"The Kaggle client finished but left no zip file for {dataset}; rerun the rule.")
    log.info("downloaded %s (%.1f GB)", archive, archive.stat().st_size / 1e9)


def _authenticated_kaggle_api(dataset: str):
    try:
        # The import authenticates already; without credentials the client calls exit(1).
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.authenticate()
    except SystemExit:
        raise UserError(
            _NO_KAGGLE.format(dataset=dataset, reason="no Kaggle credentials found", root=DATASET_DIR)
        ) from None
    except Exception as error:  # token checks go over the network: offline this is a connection error
        raise UserError(_NO_KAGGLE.format(dataset=dataset, reason=_client_failure(error), root=DATASET_DIR)) from None
    return api


@dataclass(frozen=True)
class ArchiveLimits:
    """How far an archive may expand before extraction refuses it.

    The C-NMC archive is about 9.2 GB in about 15,200 entries, and its zip is several times smaller (the
    black backgrounds compress well); a zip bomb expands a thousandfold. Each limit is a few times what
    the real archive needs. ``zipfile`` never writes more of an entry than the size its header declares,
    so checking the declared sizes bounds what extraction writes.
    """

    max_total_bytes: int = 32 * 2**30
    max_entries: int = 100_000
    # Declared uncompressed bytes per byte of the archive file, over the whole archive: one all-black
    # image may compress a thousandfold, the archive as a whole does not.
    max_ratio: float = 100.0


C_NMC_ARCHIVE_LIMITS = ArchiveLimits()


def _checked_members(archive: zipfile.ZipFile, archive_path: Path, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """Every entry, once none would land outside the folder, none is a symbolic link and the whole stays
    within ``limits``; otherwise a UserError naming the archive and what it holds."""
    members = archive.infolist()
    for member in members:
        name = PurePosixPath(member.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
            raise UserError(
                f"{archive_path} holds the entry {member.filename!r}, which would be written outside the "
                f"extraction folder. Refusing to extract it: use the original archive from Kaggle."
            )
        if stat.S_ISLNK(member.external_attr >> 16):
            raise UserError(
                f"{archive_path} holds the entry {member.filename!r}, a symbolic link; the C-NMC archive has "
                f"none. Refusing to extract it: use the original archive from Kaggle, or unpack it yourself, check "
                f"where its links lead, and set data.source: directory."
            )
    total = sum(member.file_size for member in members)
    ratio = total / archive_path.stat().st_size
    if len(members) > limits.max_entries or total > limits.max_total_bytes or ratio > limits.max_ratio:
        raise UserError(
            f"{archive_path} would expand to {total / 1e9:.1f} GB in {len(members):,} entries, {ratio:.0f} times "
            f"its own size; the limits are {limits.max_total_bytes / 1e9:.1f} GB, {limits.max_entries:,} entries and "
            f"{limits.max_ratio:.0f} times (the C-NMC archive is about 9.2 GB in about 15,200 entries). Refusing to "
            f"extract it, as a damaged or crafted archive could fill the disk: use the original archive from "
            f"Kaggle, or, if this one is what you mean, unpack it yourself and set data.source: directory."
        )
    return members


def extract_archive(
    archive_path: str | Path, destination: str | Path, limits: ArchiveLimits = C_NMC_ARCHIVE_LIMITS
) -> Path:
    """Extract the C-NMC archive into ``destination`` and return the dataset root, ``destination/C-NMC_Leukemia``.

    Every entry is checked before anything is written: an entry that would land outside ``destination``,
    a symbolic link entry, or an archive beyond ``limits`` is refused (links are refused rather than
    extracted as plain files, whose content would be the link's target path). Extraction goes to a
    temporary folder first, so a failure never leaves a half-filled destination.
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
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = _checked_members(archive, archive_path, limits)
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
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
