"""Opening the image cache for training and prediction: a cache damaged on disk after it was written, or left by an
older version of the workflow, is found before any model reads it, with the rule that rebuilds it."""

import os

import pytest

from file_faults import zero_row
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, write_tsv
from leukemia_dtl.core.format_versions import FORMAT_VERSION_KEY
from leukemia_dtl.core.vocabulary import CACHE_IMAGES_FILE, INDEX_FILE
from leukemia_dtl.data.image_cache import build_image_cache
from leukemia_dtl.data.inventory import build_inventory
from leukemia_dtl.model.inputs import ImageCache

IMAGES = 12
SIZE = 32


@pytest.fixture
def image_cache(demo_dataset, tmp_path):
    inventory, _ = build_inventory(demo_dataset)
    paths = inventory.loc[inventory["label"] != "", "path"].tolist()[:IMAGES]
    build_image_cache(demo_dataset, paths, SIZE, tmp_path / CACHE_IMAGES_FILE, tmp_path / INDEX_FILE)
    ImageCache.open(tmp_path, SIZE)  # undamaged, it opens
    return tmp_path


def test_a_zeroed_cache_row_is_found_before_training_reads_it(image_cache):
    zero_row(image_cache / CACHE_IMAGES_FILE, 5)
    with pytest.raises(UserError, match=r"1 row\(s\) of .*images.npy do not match .* row 5.*forcerun build_image"):
        ImageCache.open(image_cache, SIZE)


def test_a_truncated_cache_is_found_before_training_reads_it(image_cache):
    images = image_cache / CACHE_IMAGES_FILE
    os.truncate(images, images.stat().st_size - SIZE * SIZE * 3 // 2)
    with pytest.raises(UserError, match=r"images.npy is damaged .*forcerun build_image_cache"):
        ImageCache.open(image_cache, SIZE)


@pytest.mark.parametrize("rule", ["build_image_cache", "build_final_phase_cache"])
def test_a_cache_of_an_older_version_names_the_rule_that_wrote_it(image_cache, rule):
    """The labelled and the final-phase cache are written by two rules; the one that rebuilds it is named."""
    write_tsv(read_tsv(image_cache / INDEX_FILE).drop(columns=FORMAT_VERSION_KEY), image_cache / INDEX_FILE)
    with pytest.raises(UserError, match=rf"older version of the workflow; rebuild: snakemake --forcerun {rule} "):
        ImageCache.open(image_cache, SIZE, rule=rule)
