"""Faults of the array caches (issue #13, item 2), injected for real: writes that stop short under a file
size limit or on a full file system, a worker killed by SIGKILL, and caches damaged on disk after they were
written. Each must end in a clear error naming the file, with nothing published under the final name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, write_tsv
from leukemia_dtl.core.vocabulary import CACHE_IMAGES_FILE, CHECKSUM_COLUMN, FEATURES_FILE, INDEX_FILE
from leukemia_dtl.data.image_cache import build_image_cache
from leukemia_dtl.model.inputs import FeatureTable, ImageCache
from leukemia_dtl.tuning.grid_search import extract_features

IMAGES = 12
SIZE = 32
ROW_BYTES = SIZE * SIZE * 3
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")  # tmpfs allocates whole pages


@pytest.fixture(scope="module")
def bmp_folder(tmp_path_factory) -> tuple[Path, list[str]]:
    """Noise BMPs: no pixel is black, so a row left unwritten would show."""
    folder = tmp_path_factory.mktemp("bmps")
    rng = np.random.default_rng(0)
    names = [f"{number}.bmp" for number in range(IMAGES)]
    for name in names:
        Image.fromarray(rng.integers(1, 256, (40, 40, 3), dtype=np.uint8)).save(folder / name)
    return folder, names


def start_python(code: str, file_size_limit: int | None = None) -> subprocess.Popen:
    """``code`` in a fresh interpreter that imports the package (and the tests' fixtures), optionally under
    a file size limit: with SIGXFSZ ignored, a write past it stops short and the next one fails (EFBIG),
    as on a full disk or quota."""
    if file_size_limit is not None:
        code = (
            "import resource, signal\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit}))\n" + code
        )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "scripts"), str(REPO / "tests")])}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def build_cache_code(folder: Path, names: list[str], out: Path) -> str:
    return (
        "from leukemia_dtl.data.image_cache import build_image_cache\n"
        f"build_image_cache({str(folder)!r}, {names!r}, {SIZE}, {str(out / CACHE_IMAGES_FILE)!r}, "
        f"{str(out / INDEX_FILE)!r}, workers=2)\n"
    )


def extract_features_code(dataset: tuple[Path, Path], out: Path) -> str:
    split_path, cache_dir = dataset
    return (
        "from leukemia_dtl.model import classifiers\n"
        "from leukemia_dtl.tuning.grid_search import extract_features\n"
        "from model_stage_fixtures import TINY_BACKBONE\n"
        "classifiers.BACKBONES['tiny'] = TINY_BACKBONE\n"
        "extract_features(model_name='tiny', model_options={'weights': 'none', 'dropout': 0.5}, image_size=32, seed=0, "
        f"split_path={str(split_path)!r}, cache_dir={str(cache_dir)!r}, out_dir={str(out)!r})\n"
    )


@pytest.fixture
def full_file_system(tmp_path):
    """A tmpfs (root only) with room for all of the cache but its last few bytes: only the write of the last
    row stops short, with no failing write after it."""
    mount_point = tmp_path / "small_fs"
    mount_point.mkdir()
    cache_bytes = 128 + IMAGES * ROW_BYTES  # with the .npy header
    pages = cache_bytes // PAGE_BYTES
    assert 0 < cache_bytes - pages * PAGE_BYTES < ROW_BYTES
    options = f"size={pages * PAGE_BYTES}"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def assert_failed_publishing_nothing(process: subprocess.Popen, target: Path, reason: str) -> None:
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output
    assert f"Writing {target} failed: {reason}" in output, output
    assert "Nothing was published" in output
    assert list(target.parent.iterdir()) == [], "a partial or unchecked file was left behind"


def test_a_file_size_limit_stops_the_cache_with_nothing_published(bmp_folder, tmp_path):
    folder, names = bmp_folder
    out = tmp_path / "cache"
    out.mkdir()
    # Half the cache fits: one row is written short and the rows after it fail.
    process = start_python(build_cache_code(folder, names, out), file_size_limit=IMAGES * ROW_BYTES // 2)
    assert_failed_publishing_nothing(process, out / CACHE_IMAGES_FILE, "File too large")


def test_a_full_file_system_stops_the_cache_with_nothing_published(bmp_folder, full_file_system):
    folder, names = bmp_folder
    process = start_python(build_cache_code(folder, names, full_file_system))
    assert_failed_publishing_nothing(process, full_file_system / CACHE_IMAGES_FILE, "No space left on device")


@pytest.mark.slow
def test_a_file_size_limit_stops_the_features_with_nothing_published(dataset, tmp_path):
    out = tmp_path / "features"
    out.mkdir()
    # 128 images' features take 16 KiB; the limit lets the other files the job writes through.
    process = start_python(extract_features_code(dataset, out), file_size_limit=4096)
    assert_failed_publishing_nothing(process, out / FEATURES_FILE, "File too large")


def worker_pids(pid: int) -> list[int]:
    """The pool workers of process ``pid``, forked from it: its children with its command line."""
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in children if Path(f"/proc/{child}/cmdline").read_bytes() == command_line]


def test_a_killed_worker_fails_the_cache_within_seconds(tmp_path):
    # A FIFO that nobody writes keeps the worker that opens it busy, like a read hanging on a network file
    # system, so the kill surely lands mid-build.
    os.mkfifo(tmp_path / "hanging.bmp")
    out = tmp_path / "cache"
    out.mkdir()
    # Forked workers are children of the builder with its command line (Python 3.14 defaults to forkserver).
    forked_workers = "import multiprocessing\nmultiprocessing.set_start_method('fork')\n"
    process = start_python(forked_workers + build_cache_code(tmp_path, ["hanging.bmp"], out))
    try:
        deadline = time.monotonic() + 60
        while not worker_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(worker_pids(process.pid)[0], signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode != 0
    assert f"A worker process building {out / CACHE_IMAGES_FILE} died" in output, output
    assert list(out.iterdir()) == []


@pytest.fixture
def image_cache(bmp_folder, tmp_path) -> Path:
    folder, names = bmp_folder
    build_image_cache(folder, names, SIZE, tmp_path / CACHE_IMAGES_FILE, tmp_path / INDEX_FILE, workers=1)
    assert CHECKSUM_COLUMN in read_tsv(tmp_path / INDEX_FILE)
    ImageCache.open(tmp_path, SIZE)  # undamaged, it opens
    return tmp_path


def zero_row(array_file: Path, row: int) -> None:
    """Overwrite one row with zeros, as a block lost by a disk or a copy would read."""
    array = np.load(array_file, mmap_mode="r")
    offset, row_bytes = array.offset, array[0].nbytes
    del array
    with open(array_file, "r+b") as handle:
        handle.seek(offset + row * row_bytes)
        handle.write(bytes(row_bytes))


def test_a_zeroed_cache_row_is_found_before_training_reads_it(image_cache):
    zero_row(image_cache / CACHE_IMAGES_FILE, 5)
    with pytest.raises(UserError, match=r"1 row\(s\) of .*images.npy do not match .* row 5.*forcerun build_image"):
        ImageCache.open(image_cache, SIZE)


def test_a_truncated_cache_is_found_before_training_reads_it(image_cache):
    os.truncate(image_cache / CACHE_IMAGES_FILE, (image_cache / CACHE_IMAGES_FILE).stat().st_size - ROW_BYTES // 2)
    with pytest.raises(UserError, match=r"images.npy is damaged .*forcerun build_image_cache"):
        ImageCache.open(image_cache, SIZE)


def test_a_cache_from_before_the_checksums_is_refused_with_the_rebuild_command(image_cache):
    """An index as versions before the checksums wrote it (row, path): its rows cannot be checked, so the
    cache is rebuilt, not read unchecked."""
    index = read_tsv(image_cache / INDEX_FILE)
    write_tsv(index.drop(columns=CHECKSUM_COLUMN), image_cache / INDEX_FILE)
    with pytest.raises(UserError, match=r"index.tsv has no crc32 column.*older version.*forcerun build_image_cache"):
        ImageCache.open(image_cache, SIZE)


def test_a_zeroed_feature_row_is_found_before_tuning_reads_it(dataset, tiny_backbone, tmp_path):
    split_path, cache_dir = dataset
    extract_features(
        model_name="tiny",
        model_options={"weights": "none", "dropout": 0.5},
        image_size=32,
        seed=0,
        split_path=split_path,
        cache_dir=cache_dir,
        out_dir=tmp_path,
    )
    FeatureTable.open(tmp_path)  # undamaged, it opens
    zero_row(tmp_path / FEATURES_FILE, 7)
    with pytest.raises(UserError, match=r"features.npy do not match .* row 7.*forcerun extract_features"):
        FeatureTable.open(tmp_path)
