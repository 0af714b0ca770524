"""Decoded, resized uint8 image caches that training memory-maps.

Each image is decoded and resized once per image size, however many schemes, models and seeds use it.
Normalisation and augmentation are not baked in: they belong to the model.
"""

from __future__ import annotations

import logging
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import atomic_path, write_cache_index

log = logging.getLogger(__name__)

_worker_state: dict = {}


def load_resized(path: str | Path, size: int) -> np.ndarray:
    """Decode one image to RGB and resize it bilinearly to ``size`` x ``size``."""
    with Image.open(path) as image:
        image.load()
        # C-NMC BMPs are RGB already; convert() would copy every pixel for nothing.
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _open_worker(array_path: str, data_offset: int, root: str, size: int) -> None:
    _worker_state.update(
        fd=os.open(array_path, os.O_WRONLY), offset=data_offset, root=Path(root), size=size, row_bytes=size * size * 3
    )


def _fill_rows(task: tuple[int, list[str]]) -> int:
    """Decode a chunk of images and write them at their rows of the .npy file.

    Positioned writes (pwrite) cost less than page faults on a writable memmap, and no pixels cross
    process boundaries.
    """
    start, paths = task
    state = _worker_state
    for offset, relative in enumerate(paths):
        try:
            pixels = load_resized(state["root"] / relative, state["size"])
        except Exception as error:  # any decoder failure means the file changed since the inventory
            raise UserError(
                f"{state['root'] / relative} could not be decoded ({type(error).__name__}: {error}) although "
                f"the inventory read it: the dataset changed; rerun with --forcerun inventory."
            ) from None
        os.pwrite(state["fd"], pixels.tobytes(), state["offset"] + (start + offset) * state["row_bytes"])
    return len(paths)


def build_image_cache(
    root: str | Path,
    paths: list[str],
    size: int,
    images_file: str | Path,
    index_file: str | Path,
    workers: int = 1,
) -> None:
    """Write ``images_file`` (N x size x size x 3 uint8 ``.npy``) and ``index_file`` (row, path).

    Workers write their rows straight into the file, so no pixels cross process boundaries.
    """
    if not paths:
        raise UserError("no images to cache: the inventory holds no image of the cached sources")
    started = time.perf_counter()
    # Small chunks keep both workers busy to the end; 64 rows amortise the task overhead.
    chunk = max(1, min(64, len(paths) // (workers * 8)))
    tasks = [(start, paths[start : start + chunk]) for start in range(0, len(paths), chunk)]
    with atomic_path(images_file) as tmp:
        # The .npy header and a file of the final size; workers fill in the rows.
        header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        data_offset = header.offset
        del header
        done = 0
        with Pool(workers, initializer=_open_worker, initargs=(str(tmp), data_offset, str(root), size)) as pool:
            for count in pool.imap_unordered(_fill_rows, tasks):
                done += count
                if done == len(paths) or done % (chunk * 20) < count:
                    rate = done / (time.perf_counter() - started)
                    log.info("cached %d/%d images (%.0f images/s)", done, len(paths), rate)
    write_cache_index(paths, index_file)
    log.info("image cache %s: %d images at %d px", images_file, len(paths), size)
