"""The paper's grid search (section 2.3.2): one grid configuration trained on train, scored on val.

:func:`train_configuration` trains a configuration one of two ways, with the same result for a frozen
base without augmentation:
- on images (``cache_dir``): the whole classifier, as the final training does;
- on features (``features_dir``, the fast path): the frozen base sees no augmentation and never
  changes, so its features are computed once per scheme and model (:func:`extract_features`) and each
  configuration trains only the head. The head starts from the same weights (``build_head_model``) and
  sees the same batches in the same order, so it learns the same function.

The grid tunes the frozen phase only: a model's ``fine_tune`` is ignored here, and its ``class_weight``
weighs the loss as in the final training, so what is tuned is what is trained.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import write_cache_index, write_json, write_verified_npy
from leukemia_dtl.core.vocabulary import (
    FEATURES_FILE,
    INDEX_FILE,
    MODEL_OPTION_GROUPS,
    POSITIVE_CLASS,
    builder_options,
    drop_model_options,
)
from leukemia_dtl.model import backend
from leukemia_dtl.model.classifiers import build_head_model, compile_classifier, feature_extractor
from leukemia_dtl.model.inference import probability_of_all
from leukemia_dtl.model.inputs import CachedImageBatches, FeatureTable, ImageCache
from leukemia_dtl.model.training import (
    build_seeded_classifier,
    class_weights,
    read_training_subsets,
    training_batches,
)

log = logging.getLogger("leukemia_dtl")

EXTRACTION_BATCH_SIZE = 64
# The training-loop options a configuration sets; the tuning has epochs of its own.
TUNED_TRAINING_OPTIONS = tuple(name for name in MODEL_OPTION_GROUPS["training"] if name != "epochs")


def configuration_options(model_options: Mapping, hyperparameters: Mapping) -> dict:
    """One grid configuration: the grid point over the model's config entry, whose ``epochs`` gives way
    to the tuning epochs."""
    return {**drop_model_options(model_options, names=["epochs"]), **hyperparameters}


def extract_features(
    *,
    model_name: str,
    model_options: Mapping,
    image_size: int,
    seed: int,
    split_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    threads: int | None = None,
) -> None:
    """The frozen base's pooled features of every train and val image, as ``features.npy`` + ``index.tsv``
    (rows in cache order, with their checksums; the array is verified before it is published). The base is
    built exactly as :func:`train_configuration` builds it on images (same seed, same calibration images, no
    augmentation)."""
    if threads:
        backend.limit_cpu_threads(threads)
    classifier_options = builder_options(model_options)
    if not classifier_options.get("freeze_base", True):
        raise UserError(
            f"models.{model_name} unfreezes its base: its features change in training, so tuning "
            "must train on images (the fast path needs freeze_base: true)."
        )
    subsets = read_training_subsets(split_path)
    cache = ImageCache.open(cache_dir, image_size)
    classifier = build_seeded_classifier(model_name, classifier_options, cache, subsets, image_size, None, seed)
    paths = pd.concat([subset["path"] for subset in subsets.values()])
    rows = cache.rows_for(paths)
    order = np.argsort(rows, kind="stable")
    started = time.perf_counter()
    batches = CachedImageBatches(cache.images, rows[order], batch_size=EXTRACTION_BATCH_SIZE)
    features = feature_extractor(classifier).predict(batches, verbose=0).astype(np.float32)
    log.info(
        "%s: features of %d images (%d values each) in %.1f s",
        model_name,
        len(features),
        features.shape[1],
        time.perf_counter() - started,
    )
    out_dir = Path(out_dir)
    checksums = write_verified_npy(
        out_dir / FEATURES_FILE, features.dtype, features.shape, lambda rows: rows.write(0, features)
    )
    write_cache_index(paths.to_numpy()[order], out_dir / INDEX_FILE, checksums)


def fit_and_score(
    model: keras.Model,
    train_batches: CachedImageBatches,
    val_batches: CachedImageBatches,
    val_is_all: np.ndarray,
    epochs: int,
    class_weight: dict[int, float] | None = None,
) -> tuple[dict, np.ndarray]:
    """Train ``epochs`` epochs (the loss weighted by ``class_weight``, Keras's, if given); score the final
    model on val (loss, accuracy, ROC-AUC of P(ALL)), unweighted.

    Returns the scores and P(ALL) of each val image in split order.
    """
    started = time.perf_counter()
    history = model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=epochs,
        class_weight=class_weight,
        shuffle=False,
        verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_epoch_begin=train_batches.set_epoch)],
    )
    outputs = model.predict(val_batches, verbose=0)
    val_loss = float(history.history["val_loss"][-1])
    if not (math.isfinite(val_loss) and np.isfinite(outputs).all()):
        # A diverged configuration has no scores, so it ranks last.
        scores = {"val_loss": None, "val_accuracy": None, "val_auc": None, "diverged": True}
        return {**scores, "train_seconds": time.perf_counter() - started}, np.full(len(val_is_all), np.nan)
    p_all = np.empty(len(val_is_all))
    p_all[val_batches.order] = probability_of_all(outputs)
    scores = {
        "val_loss": val_loss,
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "val_auc": float(roc_auc_score(val_is_all, p_all)) if len(set(val_is_all)) == 2 else None,
        "diverged": False,
        "train_seconds": time.perf_counter() - started,
    }
    return scores, p_all


def train_configuration(
    *,
    model_name: str,
    model_options: Mapping,
    hyperparameters: Mapping,
    epochs: int,
    seed: int,
    split_path: str | os.PathLike,
    features_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    augmentation: Mapping | None = None,
) -> tuple[dict, np.ndarray]:
    """Train one grid configuration on train; return its val scores and val P(ALL) (split order).

    ``model_options`` is the model's config entry; its ``class_weight`` applies, its ``fine_tune`` does not
    (the grid tunes the frozen phase).

    With ``features_dir`` it takes the fast path (head on features); else it trains the whole classifier
    on the image cache in ``cache_dir`` (with ``augmentation``, if given).
    """
    options = configuration_options(model_options, hyperparameters)
    batch_size, optimizer, learning_rate = (options[name] for name in TUNED_TRAINING_OPTIONS)
    classifier_options = builder_options(options)
    subsets = read_training_subsets(split_path)
    class_weight = class_weights(model_name, options.get("class_weight"), subsets["train"]["label"])
    if features_dir is not None:
        table = FeatureTable.open(features_dir)
        keras.utils.set_random_seed(seed)
        model = build_head_model(model_name, table.array.shape[1], **drop_model_options(classifier_options, ["base"]))
    else:
        table = ImageCache.open(cache_dir, image_size)
        model = build_seeded_classifier(model_name, classifier_options, table, subsets, image_size, augmentation, seed)
    compile_classifier(model, optimizer=optimizer, learning_rate=learning_rate)
    train_batches, val_batches = training_batches(table, subsets, batch_size, seed)
    val_is_all = (subsets["val"]["label"] == POSITIVE_CLASS).to_numpy()
    return fit_and_score(model, train_batches, val_batches, val_is_all, epochs, class_weight)


def tune_configuration(*, out_path: str | os.PathLike, threads: int | None = None, **arguments) -> dict:
    """:func:`train_configuration`, its scores written to ``out_path`` (JSON) with the configuration."""
    if threads:
        backend.limit_cpu_threads(threads)
    scores, _ = train_configuration(**arguments)
    hyperparameters = arguments["hyperparameters"]
    path = "images" if arguments.get("features_dir") is None else "features"
    result = {
        "model": arguments["model_name"],
        **hyperparameters,
        "epochs": arguments["epochs"],
        "seed": arguments["seed"],
        "path": path,
        **scores,
    }
    write_json(result, out_path)
    if scores["diverged"]:
        log.warning("%s %s diverged: no scores, it ranks last", arguments["model_name"], hyperparameters)
    else:
        log.info(
            "%s %s: val_accuracy %.4f val_auc %s val_loss %.4f (%s path, %.1f s)",
            arguments["model_name"],
            hyperparameters,
            scores["val_accuracy"],
            scores["val_auc"],
            scores["val_loss"],
            path,
            scores["train_seconds"],
        )
    return result
