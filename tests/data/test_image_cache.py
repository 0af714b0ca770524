import shutil

import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, row_checksums
from leukemia_dtl.core.vocabulary import CHECKSUM_COLUMN
from leukemia_dtl.data.image_cache import build_image_cache, load_resized
from leukemia_dtl.data.inventory import build_inventory


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
