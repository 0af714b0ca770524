"""ImageNet weights in the Keras cache, so training jobs run offline with ``weights="imagenet"``.

Weights go to ``<keras_home>/models/<file>``, where ``keras.applications`` looks first. Training jobs set
``KERAS_HOME=<keras_home>`` and keep ``weights="imagenet"``: passing the file path as ``weights`` would
silently skip the extra normalisation layer Keras's EfficientNet adds for its ImageNet weights.
File names, URLs and hashes are those of ``keras.applications`` (see ``classifiers.BACKBONES``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import keras

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import KERAS_CACHE_SUBDIR
from leukemia_dtl.model.classifiers import backbone


def imagenet_weights_path(model_name: str, keras_home: str | os.PathLike) -> Path:
    """Where Keras looks for the ImageNet ``notop`` weights of ``model_name``."""
    return Path(keras_home) / KERAS_CACHE_SUBDIR / backbone(model_name).imagenet_notop.file_name


def default_keras_home() -> Path:
    """The Keras cache this process uses (Keras reads ``KERAS_HOME`` once, when it is imported)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def missing_weights_message(model_name: str, keras_home: str | os.PathLike, error: Exception) -> str:
    weights = backbone(model_name).imagenet_notop
    return (
        f"Could not get the ImageNet weights of {model_name} ({error}). Without internet access, download "
        f"{weights.origin} elsewhere and put the file at {imagenet_weights_path(model_name, keras_home)} "
        f"(md5 {weights.md5}); jobs run with KERAS_HOME={keras_home} then find it. "
        "Or set weights: none to train from random initialisation."
    )


def fetch_imagenet_weights(model_names: Iterable[str], keras_home: str | os.PathLike) -> list[Path]:
    """Download (or verify already cached) ImageNet ``notop`` weights into ``<keras_home>/models/``."""
    keras_home = Path(keras_home).absolute()
    # keras.utils.get_file silently falls back to /tmp/.keras when the cache directory is not writable;
    # creating it first makes that fallback a visible error below instead.
    (keras_home / KERAS_CACHE_SUBDIR).mkdir(parents=True, exist_ok=True)
    paths = []
    for model_name in model_names:
        weights = backbone(model_name).imagenet_notop
        try:
            fetched = keras.utils.get_file(
                weights.file_name,
                weights.origin,
                file_hash=weights.md5,
                cache_subdir=KERAS_CACHE_SUBDIR,
                cache_dir=str(keras_home),
            )
        # Offline, Keras raises a bare Exception("URL fetch failure on ..."); a bad copy raises ValueError.
        except Exception as error:
            raise UserError(missing_weights_message(model_name, keras_home, error)) from error
        expected = imagenet_weights_path(model_name, keras_home)
        if Path(fetched).resolve() != expected.resolve():
            raise UserError(f"Keras stored {fetched}, not {expected}: make {keras_home} writable.")
        paths.append(expected)
    return paths


@contextlib.contextmanager
def explain_missing_imagenet_weights(model_name: str) -> Iterator[None]:
    """Turn Keras's bare download failure while building ``model_name`` into a UserError saying what to do."""
    try:
        yield
    except Exception as error:
        if not str(error).startswith("URL fetch failure"):
            raise
        raise UserError(missing_weights_message(model_name, default_keras_home(), error)) from error
