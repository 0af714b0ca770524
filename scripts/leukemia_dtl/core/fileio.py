"""File I/O of every stage: atomic writes (a killed job never leaves a file that looks complete), verified
row arrays (``.npy`` caches whose rows are checked against their checksums before they are published) and
checked reads of the tables and JSON files that earlier rules wrote."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.format_versions import CACHE_INDEX_FORMAT_VERSION, FORMAT_VERSION_KEY, check_format_version
from leukemia_dtl.core.vocabulary import CACHE_INDEX_COLUMNS, CHECKSUM_COLUMN


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only on success. ``durable=False``
    skips forcing the data to disk before the move, for files whose reader detects damaged data itself
    (a checksum) and has a fallback."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; results are shared with the group like any file the user creates.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        # Data on disk before the name: after a crash of the node, a renamed file could otherwise be empty.
        if durable:
            _flush_to_disk(tmp, target)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _flush_to_disk(tmp: Path, target: Path) -> None:
    with storage_errors(target):
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _flush_folder_to_disk(folder: Path) -> None:
    for directory, _, files in os.walk(folder):
        for name in [*files, "."]:
            fd = os.open(Path(directory) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a path beside ``target`` to build a folder at; it replaces ``target`` only on success, so a killed
    job never leaves a complete-looking folder (the folder counterpart of :func:`atomic_path`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        staged = staging / target.name
        yield staged
        with storage_errors(target):
            _flush_folder_to_disk(staged)
            if target.exists():
                # An earlier export moves into the staging folder, which is removed below.
                os.replace(target, staging / "replaced")
            os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def storage_errors(target: str | os.PathLike) -> Iterator[None]:
    """Turn a write to ``target`` that the file system refused (full disk, quota, file size limit, I/O
    error) into a UserError naming the file and what to check."""
    try:
        yield
    except OSError as error:
        folder = Path(target).parent
        raise UserError(
            f"Writing {target} failed: {error.strerror or error}. Nothing was published under that name. "
            f"Check the file system of {folder} (free space: df -h {folder}; quota: quota -s; file size "
            "limit: ulimit -f) and rerun."
        ) from None


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_tsv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp, storage_errors(path):
        frame.to_csv(tmp, sep="\t", index=False)


def write_cache_index(paths: Sequence[str], path: str | os.PathLike, checksums: Sequence[int]) -> None:
    """The index of a cache array (images or features): row ``i`` holds the image ``paths[i]``, whose bytes
    have the CRC-32 ``checksums[i]``; readers check them (:func:`damaged_rows`). Every row carries the index's
    format version, a column that TSV readers of the other columns pass over (:func:`read_cache_index`)."""
    row, image = CACHE_INDEX_COLUMNS
    index = {
        row: range(len(paths)),
        image: paths,
        CHECKSUM_COLUMN: checksums,
        FORMAT_VERSION_KEY: CACHE_INDEX_FORMAT_VERSION,
    }
    write_tsv(pd.DataFrame(index), path)


def read_cache_index(path: str | os.PathLike, rule: str) -> pd.DataFrame:
    """A cache index as :func:`write_cache_index` wrote it; one of another format version (an older one lacks
    the stamp, or the checksums) is a UserError naming ``rule``, the rule that writes it."""
    index = read_tsv(path)
    stamps = set(index[FORMAT_VERSION_KEY]) if FORMAT_VERSION_KEY in index else {None}
    for stamp in stamps:
        # The table is read as text; a stamp that is a number compares as one.
        version = int(stamp) if stamp and stamp.isdecimal() else stamp
        check_format_version(version, CACHE_INDEX_FORMAT_VERSION, path, rule)
    return index


def row_checksums(rows: np.ndarray) -> list[int]:
    """CRC-32 of each row of ``rows`` (along the first axis)."""
    return [zlib.crc32(row) for row in np.ascontiguousarray(rows)]


def damaged_rows(array: np.ndarray, rows: Sequence[int], checksums: Sequence[int]) -> list[int]:
    """Those of ``rows`` of ``array`` whose bytes do not have their checksum."""
    return [row for row, checksum in zip(rows, checksums, strict=True) if zlib.crc32(array[row]) != checksum]


@dataclass(frozen=True)
class NpyRows:
    """The rows of a ``.npy`` file being written, for writers in this process or in worker processes."""

    path: Path  # the temporary file
    target: Path  # the name it will be published under, for messages
    data_offset: int
    row_bytes: int

    def write(self, first_row: int, rows: np.ndarray) -> list[int]:
        """Write ``rows`` from row ``first_row`` on, every byte checked; return their checksums."""
        rows = np.ascontiguousarray(rows)
        data, offset = memoryview(rows).cast("B"), self.data_offset + first_row * self.row_bytes
        with storage_errors(self.target):
            fd = os.open(self.path, os.O_WRONLY)
            try:
                # A write may stop short (full disk or quota, file size limit, network file system): the rest
                # is written again, and a write that cannot go on raises.
                while data:
                    written = os.pwrite(fd, data, offset)
                    if written == 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    data, offset = data[written:], offset + written
            finally:
                # A network file system reports failed writes when the file is closed.
                os.close(fd)
        return row_checksums(rows)


def write_verified_npy(
    target: str | os.PathLike, dtype: np.dtype, shape: Sequence[int], fill: Callable[[NpyRows], Sequence[int]]
) -> list[int]:
    """Write the ``.npy`` file ``target`` atomically; return the checksum of each row.

    ``fill`` writes every row with :meth:`NpyRows.write` (in any process) and returns their checksums in
    row order. Before ``target`` appears, the file is flushed to disk, its size checked and every row read
    back against its checksum, so rows that a file system dropped are never published.
    """
    target, dtype = Path(target), np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    with atomic_path(target) as tmp, open(tmp, "r+b") as handle:
        # This handle stays open while others write: fsync on it reports any write-back error since it was
        # opened, whichever process wrote the failed page.
        with storage_errors(target):
            np.lib.format.write_array_header_1_0(handle, header)
            handle.flush()
        rows = NpyRows(tmp, target, handle.tell(), row_bytes)
        checksums = list(fill(rows))
        with storage_errors(target):
            os.fsync(handle.fileno())
        size, expected_size = os.fstat(handle.fileno()).st_size, rows.data_offset + shape[0] * row_bytes
        if size != expected_size or len(checksums) != shape[0]:
            raise UserError(
                f"Writing {target} ended with {size} bytes and {len(checksums)} checksums instead of "
                f"{expected_size} bytes and {shape[0]} rows: rows were lost. Nothing was published; rerun."
            )
        stored = np.memmap(tmp, dtype=dtype, mode="r", offset=rows.data_offset, shape=tuple(shape))
        damaged = damaged_rows(stored, range(shape[0]), checksums)
        if damaged:
            raise UserError(
                f"{len(damaged)} of the {shape[0]} rows written to {target} read back different (first: row "
                f"{damaged[0]}): the file system lost writes. Nothing was published; check the disk of "
                f"{target.parent} and rerun."
            )
    return checksums


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (an archive of several GB never sits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_tsv(path: str | os.PathLike) -> pd.DataFrame:
    # keep_default_na=False: an empty label (final-phase images) stays "", not NaN.
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, remedy: str) -> None:
    """UserError naming ``what`` (e.g. "Split file results/splits/random.tsv") if ``frame`` lacks a column."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise UserError(f"{what} lacks column(s) {', '.join(missing)}; it needs {', '.join(columns)}. {remedy}")


def read_json(path: str | os.PathLike) -> dict:
    """A JSON output of an earlier rule; a damaged one is a UserError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {path} ({error}); delete it and rerun the rule that writes it") from None


def read_json_fields(path: str | os.PathLike, fields: Sequence[str], what: str) -> dict:
    """A JSON output that must hold ``fields``: a file written by another version of the rule that writes
    ``what`` (e.g. "the training step") is a UserError naming the file and what is missing."""
    record = read_json(path)
    missing = [name for name in fields if name not in record]
    if missing:
        raise UserError(
            f"{path} lacks {', '.join(missing)}; it was written by another version of {what}. "
            "Delete it and rerun the workflow, which writes it again."
        )
    return record


def write_json(data: dict, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp, storage_errors(path):
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
