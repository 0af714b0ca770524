"""Decoded, resized uint8 image caches that training memory-maps.

Each image is decoded and resized once per image size, however many schemes, models and seeds use it.
Normalisation and augmentation are not baked in: they belong to the model.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import NpyRows, write_cache_index, write_verified_npy
from leukemia_dtl.core.vocabulary import FINAL_PHASE_SOURCE
from leukemia_dtl.data.layout import FINAL_DIR

log = logging.getLogger(__name__)


# What a cache holds: every labelled image (the training folds and the prelim phase, all a split can use), or
# the unlabelled final-phase images of the challenge's submission, cached apart so the labelled cache and
# every model built from it stay unchanged.
CACHED_IMAGE_SETS = ("labelled", "final_phase")


def images_to_cache(inventory: pd.DataFrame, images: str) -> list[str]:
    """The inventory paths of the image set ``images`` (one of CACHED_IMAGE_SETS), in inventory order."""
    if images == "labelled":
        return inventory.loc[inventory["label"] != "", "path"].tolist()
    if images == "final_phase":
        paths = inventory.loc[inventory["source"] == FINAL_PHASE_SOURCE, "path"].tolist()
        if not paths:
            raise UserError(
                f"The inventory holds no final-phase image: the archive's testing_data/ folder ({FINAL_DIR}) is "
                "missing or empty. Use the complete C-NMC_Leukemia archive, or leave the challenge submission out."
            )
        return paths
    raise UserError(f"Unknown image set {images!r} to cache; choose one of {list(CACHED_IMAGE_SETS)}. Fix the rule.")


def load_resized(path: str | Path, size: int) -> np.ndarray:
    """Decode one image to RGB and resize it bilinearly to ``size`` x ``size``."""
    with Image.open(path) as image:
        image.load()
        # C-NMC BMPs are RGB already; convert() would copy every pixel for nothing.
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _cache_rows(rows: NpyRows, root: Path, size: int, first_row: int, paths: list[str]) -> list[int]:
    """Decode a chunk of images and write them at their rows of the .npy file; return their checksums.

    Positioned writes (pwrite) cost less than page faults on a writable memmap, and no pixels cross
    process boundaries.
    """
    pixels = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for number, relative in enumerate(paths):
        try:
            pixels[number] = load_resized(root / relative, size)
        except Exception as error:  # any decoder failure means the file changed since the inventory
            raise UserError(
                f"{root / relative} could not be decoded ({type(error).__name__}: {error}) although "
                f"the inventory read it: the dataset changed; rerun with --forcerun inventory."
            ) from None
    return rows.write(first_row, pixels)


def _fill_in_workers(rows: NpyRows, root: Path, paths: list[str], size: int, workers: int) -> list[int]:
    """Every row of the cache, decoded by ``workers`` processes; the checksums in row order."""
    started = time.perf_counter()
    # Small chunks keep both workers busy to the end; 64 rows amortise the task overhead.
    chunk = max(1, min(64, len(paths) // (workers * 8)))
    checksums: list[int | None] = [None] * len(paths)
    done = 0
    # Unlike multiprocessing.Pool, which waits forever for the task of a killed worker, the executor
    # notices a dead worker at once and fails every pending task.
    pool = ProcessPoolExecutor(workers)
    try:
        first_rows = {
            pool.submit(_cache_rows, rows, root, size, start, paths[start : start + chunk]): start
            for start in range(0, len(paths), chunk)
        }
        for future in as_completed(first_rows):
            chunk_checksums = future.result()
            start = first_rows[future]
            checksums[start : start + len(chunk_checksums)] = chunk_checksums
            done += len(chunk_checksums)
            if done == len(paths) or done % (chunk * 20) < len(chunk_checksums):
                rate = done / (time.perf_counter() - started)
                log.info("cached %d/%d images (%.0f images/s)", done, len(paths), rate)
    except BrokenProcessPool:
        raise UserError(
            f"A worker process building {rows.target} died (killed by a signal: the out-of-memory killer, a "
            "cancelled job or a file size limit). Nothing was published. Rerun; if it happens again, give "
            "build_image_cache more memory (mem_mb) or fewer threads."
        ) from None
    finally:
        # On a failure, the queued chunks are dropped instead of decoded for nothing.
        pool.shutdown(cancel_futures=True)
    return checksums


def build_image_cache(
    root: str | Path,
    paths: list[str],
    size: int,
    images_file: str | Path,
    index_file: str | Path,
    workers: int = 1,
) -> None:
    """Write ``images_file`` (N x size x size x 3 uint8 ``.npy``) and ``index_file`` (row, path, crc32).

    Workers write their rows straight into the file, so no pixels cross process boundaries. Every row is
    verified against its checksum before the file is published.
    """
    if not paths:
        raise UserError("no images to cache: the inventory holds no image of the cached sources")
    checksums = write_verified_npy(
        images_file,
        np.uint8,
        (len(paths), size, size, 3),
        lambda rows: _fill_in_workers(rows, Path(root), paths, size, workers),
    )
    write_cache_index(paths, index_file, checksums)
    log.info("image cache %s: %d images at %d px", images_file, len(paths), size)
