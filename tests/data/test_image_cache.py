"""The image cache: decoded once, every row checked before it is published, stamped with its format version;
and the faults of building it, injected for real (a file size limit, a full file system, a killed worker), each
ending in a clear error naming the file, with nothing published under the final name."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from file_faults import assert_failed_publishing_nothing, start_python
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_cache_index, read_tsv, row_checksums, write_tsv
from leukemia_dtl.core.format_versions import CACHE_INDEX_FORMAT_VERSION, FORMAT_VERSION_KEY
from leukemia_dtl.core.vocabulary import CACHE_IMAGES_FILE, CHECKSUM_COLUMN, FINAL_PHASE_SOURCE, INDEX_FILE
from leukemia_dtl.data.image_cache import build_image_cache, images_to_cache, load_resized
from leukemia_dtl.data.inventory import build_inventory
from leukemia_dtl.data.layout import FINAL_DIR

IMAGES = 12
SIZE = 32
ROW_BYTES = SIZE * SIZE * 3
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")  # tmpfs allocates whole pages


@pytest.fixture(scope="module")
def labelled_paths(demo_dataset):
    inventory, _ = build_inventory(demo_dataset)
    return inventory.loc[inventory["label"] != "", "path"].tolist()


def test_cache_rows_match_a_direct_decode(demo_dataset, labelled_paths, tmp_path):
    images, index = tmp_path / "images.npy", tmp_path / "index.tsv"
    build_image_cache(demo_dataset, labelled_paths, 32, images, index, workers=2)
    cache = np.load(images, mmap_mode="r")
    assert cache.shape == (len(labelled_paths), 32, 32, 3) and cache.dtype == np.uint8
    rows = read_tsv(index)
    assert rows["path"].tolist() == labelled_paths
    assert rows["row"].astype(int).tolist() == list(range(len(labelled_paths)))
    assert rows[CHECKSUM_COLUMN].astype(int).tolist() == row_checksums(cache)
    assert set(rows[FORMAT_VERSION_KEY]) == {str(CACHE_INDEX_FORMAT_VERSION)}
    for row in (0, len(labelled_paths) // 2, len(labelled_paths) - 1):
        np.testing.assert_array_equal(cache[row], load_resized(demo_dataset / labelled_paths[row], 32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.npy", "index.tsv"]


def test_resize_is_bilinear_to_a_square_rgb(demo_dataset, labelled_paths):
    pixels = load_resized(demo_dataset / labelled_paths[0], 20)
    assert pixels.shape == (20, 20, 3)
    # Corners are the black background, the centre is the stained cell.
    assert pixels[0, 0].max() == 0 and pixels[10, 10].max() > 50


def test_failure_midway_leaves_no_cache_file(demo_dataset, labelled_paths, tmp_path):
    broken = tmp_path / "dataset"

    shutil.copytree(demo_dataset, broken)
    (broken / labelled_paths[-1]).write_bytes(b"BM")
    images, index = tmp_path / "out" / "images.npy", tmp_path / "out" / "index.tsv"
    with pytest.raises(UserError, match="could not be decoded"):
        build_image_cache(broken, labelled_paths, 32, images, index, workers=2)
    assert list((tmp_path / "out").iterdir()) == []


def test_the_cached_image_sets_are_the_labelled_or_the_final_phase_images(demo_dataset):
    inventory, _ = build_inventory(demo_dataset)
    labelled = images_to_cache(inventory, "labelled")
    final_phase = images_to_cache(inventory, "final_phase")
    assert len(labelled) == len(inventory) - 5
    assert set(inventory.set_index("path").loc[labelled, "label"]) == {"ALL", "HEM"}
    assert len(final_phase) == 5 and not set(final_phase) & set(labelled)
    assert all(path.startswith(f"{FINAL_DIR}/") for path in final_phase)
    # The submission orders them by number: the demo names them 1.bmp .. 5.bmp like the archive.
    assert sorted(path.split("/")[-1] for path in final_phase) == [f"{n}.bmp" for n in range(1, 6)]


def test_a_final_phase_cache_without_testing_data_says_so(demo_dataset):
    inventory, _ = build_inventory(demo_dataset)
    without_final = inventory[inventory["source"] != FINAL_PHASE_SOURCE]
    with pytest.raises(UserError, match=r"no final-phase image: the archive's testing_data/ folder"):
        images_to_cache(without_final, "final_phase")
    with pytest.raises(UserError, match=r"Unknown image set 'final'"):
        images_to_cache(inventory, "final")


@pytest.fixture(scope="module")
def bmp_folder(tmp_path_factory) -> tuple[Path, list[str]]:
    """Noise BMPs: no pixel is black, so a row left unwritten would show."""
    folder = tmp_path_factory.mktemp("bmps")
    rng = np.random.default_rng(0)
    names = [f"{number}.bmp" for number in range(IMAGES)]
    for name in names:
        Image.fromarray(rng.integers(1, 256, (40, 40, 3), dtype=np.uint8)).save(folder / name)
    return folder, names


@pytest.mark.parametrize(
    "old_index",
    [
        pytest.param(lambda index: index.drop(columns=FORMAT_VERSION_KEY), id="unstamped"),
        pytest.param(lambda index: index.drop(columns=[FORMAT_VERSION_KEY, CHECKSUM_COLUMN]), id="before-checksums"),
        pytest.param(lambda index: index.assign(**{FORMAT_VERSION_KEY: "1"}), id="version-1"),
    ],
)
def test_a_cache_index_of_an_older_version_is_refused_with_the_rebuild_command(bmp_folder, tmp_path, old_index):
    """An index as older versions wrote it, without checksums (its rows cannot be checked, so the cache is rebuilt,
    not read unchecked) or without the stamp, stops with the rule that rebuilds it."""
    folder, names = bmp_folder
    index_file = tmp_path / INDEX_FILE
    build_image_cache(folder, names, SIZE, tmp_path / CACHE_IMAGES_FILE, index_file)
    read_cache_index(index_file, "build_image_cache")  # as written, it reads
    write_tsv(old_index(read_tsv(index_file)), index_file)
    with pytest.raises(
        UserError,
        match=r"index.tsv was written by an older version of the workflow; rebuild: snakemake --forcerun "
        r"build_image_cache \(it has (no format version|format version 1); this version reads format version 2\)",
    ):
        read_cache_index(index_file, "build_image_cache")


def test_a_cache_index_of_a_newer_version_asks_for_an_update_or_a_rebuild(bmp_folder, tmp_path):
    folder, names = bmp_folder
    index_file = tmp_path / INDEX_FILE
    build_image_cache(folder, names, SIZE, tmp_path / CACHE_IMAGES_FILE, index_file)
    write_tsv(read_tsv(index_file).assign(**{FORMAT_VERSION_KEY: "99"}), index_file)
    with pytest.raises(UserError, match=r"newer version of the workflow \(format version 99; .*update the workflow"):
        read_cache_index(index_file, "build_final_phase_cache")


def build_cache_code(folder: Path, names: list[str], out: Path) -> str:
    return (
        "from leukemia_dtl.data.image_cache import build_image_cache\n"
        f"build_image_cache({str(folder)!r}, {names!r}, {SIZE}, {str(out / CACHE_IMAGES_FILE)!r}, "
        f"{str(out / INDEX_FILE)!r}, workers=2)\n"
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
