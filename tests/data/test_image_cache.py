import shutil

import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, row_checksums
from leukemia_dtl.core.vocabulary import CHECKSUM_COLUMN, FINAL_PHASE_SOURCE
from leukemia_dtl.data.image_cache import build_image_cache, images_to_cache, load_resized
from leukemia_dtl.data.inventory import build_inventory
from leukemia_dtl.data.layout import FINAL_DIR


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
