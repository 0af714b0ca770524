"""A small learnable image cache and split in the upstream formats, for the model-stage tests.

ALL images show a magenta cell, HEM images a blue one, on black like C-NMC; position, size and
brightness vary, so the colour is the only cue.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from leukemia_dtl.core.fileio import row_checksums, write_cache_index, write_tsv
from leukemia_dtl.core.vocabulary import CACHE_IMAGES_FILE, INDEX_FILE
from leukemia_dtl.model.classifiers import Backbone, ImagenetWeightsFile, vgg19_head

PAPER_AUGMENTATION = {"horizontal_flip": True, "rotation_degrees": 15, "shift": 0.1, "zoom": 0.1}
SUBSET_SIZES = {"train": 96, "val": 32, "test": 24, "external": 16}
UNSPLIT_IMAGES = 8  # in the cache but not in the split: prediction must skip them


CELL_COLOURS = {"ALL": (1.0, 0.3, 0.8), "HEM": (0.3, 0.4, 1.0)}


def synthetic_cell(rng: np.random.Generator, size: int, label: str) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    centre = rng.uniform(0.35, 0.65, 2) * size
    radius = rng.uniform(0.15, 0.3) * size
    cell = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    colour = rng.uniform(120, 250) * np.array(CELL_COLOURS[label])
    image = np.zeros((size, size, 3))
    image[cell] = colour + rng.normal(0, 10, (cell.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic_dataset(
    directory: Path, size: int = 32, seed: int = 0, subset_sizes: Mapping[str, int] = SUBSET_SIZES
) -> tuple[Path, Path]:
    """Write ``<directory>/cache/{images.npy,index.tsv}`` and ``<directory>/split.tsv``; return both paths."""
    rng = np.random.default_rng(seed)
    rows = []
    for subset, count in subset_sizes.items():
        for number in range(count):
            label = "ALL" if number % 3 else "HEM"  # 2:1 like C-NMC
            rows.append(
                {
                    "path": f"{subset}/{number}_{label.lower()}.bmp",
                    "subject": f"{subset}{number}",
                    "label": label,
                    "subset": subset,
                }
            )
    split = pd.DataFrame(rows)
    unsplit = [f"unsplit/{number}.bmp" for number in range(UNSPLIT_IMAGES)]
    # Cache rows in another order than the split, as a cache built from a directory listing would be.
    cache_paths = list(rng.permutation(split["path"].tolist() + unsplit))
    label_of = dict(zip(split["path"], split["label"], strict=True))
    images = np.stack([synthetic_cell(rng, size, label_of.get(path, "ALL")) for path in cache_paths])

    cache_dir = directory / "cache"
    cache_dir.mkdir(parents=True)
    np.save(cache_dir / CACHE_IMAGES_FILE, images)
    write_cache_index(cache_paths, cache_dir / INDEX_FILE, row_checksums(images))
    split_path = directory / "split.tsv"
    write_tsv(split, split_path)
    return split_path, cache_dir


def tiny_convnet(include_top=False, weights=None, input_shape=None, pooling=None, name="tiny_convnet"):
    """Two conv layers behind the ``keras.applications`` signature, so training tests take seconds.

    Random VGG19/EfficientNetB3 features (no ImageNet weights offline) are ~1e-2..1e-7 in scale, which
    needs learning rates near 1 and trains erratically; He-initialised shallow features do not.
    """
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer="he_normal")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu", kernel_initializer="he_normal")(x)
    if pooling == "max":
        x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, x, name=name)


# One registry entry, as for any keras.applications backbone; it reuses the paper's VGG-19 head.
TINY_BACKBONE = Backbone(
    application=tiny_convnet,
    model_normalization=lambda: [keras.layers.Rescaling(1 / 255, name="unit_rescaling")],
    head=vgg19_head,
    imagenet_notop=ImagenetWeightsFile(file_name="", origin="", md5=""),
)
