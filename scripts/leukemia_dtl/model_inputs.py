"""Model inputs: the split table, the uint8 image cache and the batches Keras reads from it.

Images were decoded and resized once upstream into ``<cache_dir>/images.npy`` (uint8, N x S x S x 3,
RGB) with ``<cache_dir>/index.tsv`` (``row, path``). Batches are plain slices of that memory map: no
decoding, no augmentation (that runs inside the model, on the accelerator), so the input side serves
tens of thousands of images per second and never limits training.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from leukemia_dtl.errors import UserError
from leukemia_dtl.fileio import read_tsv
from leukemia_dtl.models import CLASS_NAMES

SPLIT_COLUMNS = ("path", "subject", "label", "subset")
SUBSETS = ("train", "val", "test", "external")
CACHE_IMAGES = "images.npy"
CACHE_INDEX = "index.tsv"


def read_split(path: str | os.PathLike) -> pd.DataFrame:
    """The split table, checked: columns path, subject, label (ALL/HEM), subset (train/val/test/external)."""
    split = read_tsv(path)
    missing = [column for column in SPLIT_COLUMNS if column not in split.columns]
    if missing:
        raise UserError(f"Split file {path} lacks column(s) {missing}; it needs {list(SPLIT_COLUMNS)}.")
    bad_labels = sorted(set(split["label"]) - set(CLASS_NAMES))
    bad_subsets = sorted(set(split["subset"]) - set(SUBSETS))
    if bad_labels or bad_subsets:
        raise UserError(
            f"Split file {path} has unknown label(s) {bad_labels} or subset(s) {bad_subsets}; "
            f"labels must be {list(CLASS_NAMES)} and subsets {list(SUBSETS)}. Rebuild the split."
        )
    return split


def class_indices(labels: pd.Series) -> np.ndarray:
    """Label names -> output unit index (HEM 0, ALL 1)."""
    return labels.map({name: index for index, name in enumerate(CLASS_NAMES)}).to_numpy(dtype=np.int64)


def cache_dir_of(images_path: str | os.PathLike, index_path: str | os.PathLike) -> Path:
    """The cache directory holding both files, as rule scripts receive them as two inputs."""
    images_path, index_path = Path(images_path), Path(index_path)
    if (images_path.name, index_path.name) != (CACHE_IMAGES, CACHE_INDEX) or images_path.parent != index_path.parent:
        raise UserError(
            f"The image cache must be {CACHE_IMAGES} and {CACHE_INDEX} in one directory; "
            f"got {images_path} and {index_path}. Fix the rule's inputs."
        )
    return images_path.parent


@dataclass(frozen=True)
class ImageCache:
    images: np.ndarray  # read-only memory map, uint8 (N, S, S, 3)
    row_of_path: pd.Series  # image path -> row of ``images``

    @classmethod
    def open(cls, cache_dir: str | os.PathLike, image_size: int | None = None) -> "ImageCache":
        cache_dir = Path(cache_dir)
        images = np.load(cache_dir / CACHE_IMAGES, mmap_mode="r")
        index = read_tsv(cache_dir / CACHE_INDEX)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise UserError(
                f"{cache_dir / CACHE_IMAGES} holds {images.dtype} {images.shape}, not uint8 (N, S, S, 3) RGB. "
                "Rebuild the image cache."
            )
        if image_size is not None and images.shape[1:3] != (image_size, image_size):
            raise UserError(
                f"The image cache {cache_dir} holds {images.shape[1]}x{images.shape[2]} images but the model "
                f"wants {image_size}x{image_size}. Rebuild the cache at image_size {image_size}."
            )
        rows = index["row"].astype(np.int64)
        if index["path"].duplicated().any() or not rows.between(0, len(images) - 1).all():
            raise UserError(
                f"{cache_dir / CACHE_INDEX} repeats paths or points past the {len(images)} images in "
                f"{CACHE_IMAGES}. Rebuild the image cache."
            )
        return cls(images, pd.Series(rows.to_numpy(), index=index["path"]))

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    def rows_for(self, paths: pd.Series) -> np.ndarray:
        """Cache rows of ``paths``; every path must be in the cache."""
        missing = paths[~paths.isin(self.row_of_path.index)]
        if len(missing):
            raise UserError(
                f"{len(missing)} split image(s) are not in the image cache, e.g. {missing.iloc[0]}. "
                "The cache was built from another dataset or split: rebuild it."
            )
        return self.row_of_path.loc[paths].to_numpy()


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
