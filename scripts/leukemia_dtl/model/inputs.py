"""Model inputs: the split table, the uint8 image cache and the batches Keras reads from it.

Images were decoded and resized once upstream into ``<cache_dir>/images.npy`` (uint8, N x S x S x 3,
RGB) with ``<cache_dir>/index.tsv`` (``row, path, crc32, format_version``). Batches are plain slices of that
memory map: no decoding, no augmentation (that runs inside the model, on the accelerator), so the input side
serves tens of thousands of images per second and never limits training.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import damaged_rows, read_cache_index
from leukemia_dtl.core.vocabulary import (
    CACHE_IMAGES_FILE,
    CHECKSUM_COLUMN,
    CLASS_NAMES,
    FEATURES_FILE,
    INDEX_FILE,
)


def class_indices(labels: pd.Series) -> np.ndarray:
    """Label names -> output unit index (HEM 0, ALL 1)."""
    return labels.map({name: index for index, name in enumerate(CLASS_NAMES)}).to_numpy(dtype=np.int64)


def cache_dir_of(
    array_path: str | os.PathLike, index_path: str | os.PathLike, array_name: str = CACHE_IMAGES_FILE
) -> Path:
    """The directory holding an indexed array and its index, as rule scripts receive them as two files."""
    array_path, index_path = Path(array_path), Path(index_path)
    if (array_path.name, index_path.name) != (array_name, INDEX_FILE) or array_path.parent != index_path.parent:
        raise UserError(
            f"Expected {array_name} and {INDEX_FILE} in one directory; got {array_path} and {index_path}. "
            "Fix the rule's inputs."
        )
    return array_path.parent


@dataclass(frozen=True)
class IndexedArray:
    """A memory-mapped ``.npy`` array whose rows are images, with ``index.tsv`` (row, path, crc32) beside it."""

    array: np.ndarray
    row_of_path: pd.Series  # image path -> row of ``array``

    @classmethod
    def open(cls, directory: str | os.PathLike, array_name: str, rule: str):
        """Open the array and its index, checked: a damaged file, an index of another format version (an index
        from before the checksums among them: an unchecked cache can be read as black images), an index that
        does not cover every row once, or a row whose bytes do not match its checksum in the index is a
        UserError naming ``rule``, the rule that writes both."""
        directory = Path(directory)
        rebuild_hint = f"Rebuild it: snakemake --forcerun {rule}."
        try:
            array = np.load(directory / array_name, mmap_mode="r")
        except (OSError, ValueError) as error:  # a truncated file or a damaged header
            raise UserError(f"{directory / array_name} is damaged ({error}). {rebuild_hint}") from None
        index = read_cache_index(directory / INDEX_FILE, rule)
        rows = index["row"].astype(np.int64)
        if index["path"].duplicated().any() or sorted(rows) != list(range(len(array))):
            raise UserError(
                f"{directory / INDEX_FILE} repeats paths or does not list each of the {len(array)} rows of "
                f"{array_name} once. {rebuild_hint}"
            )
        # Reading every row once costs about a second per GB, and training reads them all anyway.
        damaged = damaged_rows(array, rows, index[CHECKSUM_COLUMN].astype(np.int64))
        if damaged:
            raise UserError(
                f"{len(damaged)} row(s) of {directory / array_name} do not match their checksums in "
                f"{INDEX_FILE} (first: row {damaged[0]}): the file was damaged after it was written. "
                f"{rebuild_hint}"
            )
        return cls(array, pd.Series(rows.to_numpy(), index=index["path"]))

    def rows_for(self, paths: pd.Series) -> np.ndarray:
        """Rows of ``paths``; every path must be in the index."""
        missing = paths[~paths.isin(self.row_of_path.index)]
        if len(missing):
            raise UserError(
                f"{len(missing)} split image(s) are not in {type(self).__name__}, e.g. {missing.iloc[0]}. "
                "It was built from another dataset or split: rebuild it."
            )
        return self.row_of_path.loc[paths].to_numpy()


class ImageCache(IndexedArray):
    """The uint8 image cache, (N, S, S, 3) RGB."""

    @classmethod
    def open(
        cls, cache_dir: str | os.PathLike, image_size: int | None = None, rule: str = "build_image_cache"
    ) -> ImageCache:
        """The cache at ``cache_dir``, written by ``rule`` (the final-phase images': build_final_phase_cache)."""
        cache = super().open(cache_dir, CACHE_IMAGES_FILE, rule)
        images = cache.images
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise UserError(
                f"{Path(cache_dir) / CACHE_IMAGES_FILE} holds {images.dtype} {images.shape}, "
                "not uint8 (N, S, S, 3) RGB. "
                "Rebuild the image cache."
            )
        if image_size is not None and images.shape[1:3] != (image_size, image_size):
            raise UserError(
                f"The image cache {cache_dir} holds {images.shape[1]}x{images.shape[2]} images but the model "
                f"wants {image_size}x{image_size}. Rebuild the cache at image_size {image_size}."
            )
        return cache

    @property
    def images(self) -> np.ndarray:
        return self.array

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    def images_for(self, paths: pd.Series) -> np.ndarray:
        """The images of ``paths``, in their order, read into memory (a few: a check or a figure's panel)."""
        return np.asarray(self.images[self.rows_for(paths)])


class FeatureTable(IndexedArray):
    """A frozen base's pooled features of the train and val images, float32 (N, D), with the same index."""

    @classmethod
    def open(cls, features_dir: str | os.PathLike) -> FeatureTable:
        table = super().open(features_dir, FEATURES_FILE, "extract_features")
        if table.array.dtype != np.float32 or table.array.ndim != 2:
            raise UserError(
                f"{Path(features_dir) / FEATURES_FILE} holds {table.array.dtype} {table.array.shape}, not float32 "
                "(N, D) features. Rerun extract_features."
            )
        return table


class CachedImageBatches(keras.utils.PyDataset):
    """Batches of cached images (uint8; the model casts) with one-hot labels when ``labels`` is given.

    ``order`` lists positions into ``rows`` (and ``labels``) in the order they are served, so model
    outputs line up with it. Within a batch, positions run in ascending cache row, the fastest way through
    a memory map; without ``shuffle_seed`` the whole order is ascending cache row. With ``shuffle_seed``
    each epoch draws a fresh batch composition from (seed, epoch), so a resumed run sees the same batches
    as an uninterrupted one: call :meth:`set_epoch` at each epoch's start (it has the LambdaCallback
    signature).
    """

    def __init__(
        self,
        images: np.ndarray,
        rows: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        batch_size: int,
        shuffle_seed: int | None = None,
    ):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.one_hot = None if labels is None else np.eye(len(CLASS_NAMES), dtype="float32")[labels]
        self.batch_size = batch_size
        self.shuffle_seed = shuffle_seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int, logs: dict | None = None) -> None:
        if self.shuffle_seed is None:
            self.order = np.argsort(self.rows, kind="stable")
            return
        permutation = np.random.default_rng([self.shuffle_seed, epoch]).permutation(len(self.rows))
        batch_number = np.arange(len(permutation)) // self.batch_size
        # Sort by batch first, then by cache row inside each batch.
        self.order = permutation[np.lexsort((self.rows[permutation], batch_number))]

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int):
        picked = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = np.asarray(self.images[self.rows[picked]])
        if self.one_hot is None:
            return (images,)
        return images, self.one_hot[picked]
