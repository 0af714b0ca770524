"""Predict P(ALL) for every split image of the held-out subsets and for the challenge's final-phase images, and
time inference (Table 2); plain and with test-time augmentation, all from one load of a run's model. The
challenge's submission file, which averages the seeds' final-phase predictions, is ``challenge_submission.py``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from leukemia_dtl.core.decisions import class_calls
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import write_json, write_tsv
from leukemia_dtl.core.vocabulary import (
    CLASS_NAMES,
    PLAIN,
    POSITIVE_CLASS,
    PREDICTED_SUBSETS,
    PREDICTION_COLUMNS,
    TTA,
)
from leukemia_dtl.data.splits import read_split
from leukemia_dtl.model import backend
from leukemia_dtl.model.challenge_submission import final_phase_order
from leukemia_dtl.model.classifiers import load_model
from leukemia_dtl.model.inputs import CachedImageBatches, ImageCache

log = logging.getLogger("leukemia_dtl")

# The dihedral group of the square (Prellberg & Kramer 2019's test-time augmentation): each of the four
# quarter turns, without and with a left-right flip first. The identity comes first.
DIHEDRAL_TRANSFORMS = tuple((quarter_turns, flip) for flip in (False, True) for quarter_turns in range(4))


def class_probabilities(logits) -> np.ndarray:
    """softmax(z) per row of the classifier's logits (class order [HEM, ALL]), in float64.

    The one probability pair of both models (``classifiers.logits_layer``): what their loss trains on every
    backend, what the exports output and what every P(ALL) here is read from. Shifted by the row's maximum,
    so no logit overflows.
    """
    logits = np.asarray(logits, dtype=np.float64)
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def probability_of_all(logits) -> np.ndarray:
    """P(ALL) = softmax(z)[ALL] from the classifier's logits, in float64 (:func:`class_probabilities`)."""
    return class_probabilities(logits)[:, CLASS_NAMES.index(POSITIVE_CLASS)]


def dihedral_transform(images: np.ndarray, quarter_turns: int, flip: bool) -> np.ndarray:
    """A batch (N, S, S, C) flipped left-right if ``flip``, then turned by ``quarter_turns`` x 90 degrees."""
    flipped = images[:, :, ::-1] if flip else images
    return np.ascontiguousarray(np.rot90(flipped, quarter_turns, axes=(1, 2)))


class DihedralBatches(CachedImageBatches):
    """Cache batches (no labels) under each of ``transforms`` in turn: batch ``t * n + b`` is batch ``b`` of
    CachedImageBatches' order under transform ``t``, so one ``model.predict`` serves them all (a call per
    transform costs Keras's per-call setup eight times)."""

    def __init__(self, images: np.ndarray, rows: np.ndarray, *, batch_size: int, transforms):
        super().__init__(images, rows, batch_size=batch_size)
        self.transforms = transforms
        self.batches_per_transform = super().__len__()

    def __len__(self) -> int:
        return self.batches_per_transform * len(self.transforms)

    def __getitem__(self, index: int):
        transform, batch = divmod(index, self.batches_per_transform)
        (images,) = super().__getitem__(batch)
        return (dihedral_transform(images, *self.transforms[transform]),)


def _transforms(test_time_augmentation: bool) -> tuple[tuple[int, bool], ...]:
    return DIHEDRAL_TRANSFORMS if test_time_augmentation else DIHEDRAL_TRANSFORMS[:1]


def view_probabilities(
    model: keras.Model, cache: ImageCache, paths: pd.Series, batch_size: int, test_time_augmentation: bool = False
) -> np.ndarray:
    """P(ALL) per view (row) and image (column, in the order of ``paths``): ``model.predict`` over cache batches;
    the first row is the images themselves (the plain prediction), with ``test_time_augmentation`` the other
    seven dihedral transforms follow.

    An output that is not a finite number (a model whose training diverged gives NaN) is a UserError:
    no value stands in for it, so a prediction table only ever holds what the model said.
    """
    transforms = _transforms(test_time_augmentation)
    batches = DihedralBatches(cache.images, cache.rows_for(paths), batch_size=batch_size, transforms=transforms)
    served = model.predict(batches, verbose=0).reshape(len(transforms), len(paths), len(CLASS_NAMES))
    logits = np.empty_like(served, dtype=np.float64)
    logits[:, batches.order] = served
    finite = np.isfinite(logits).all(axis=2)
    broken = ~finite.all(axis=0)
    if broken.any():
        first = np.flatnonzero(broken)[0]
        transform = np.flatnonzero(~finite[:, first])[0]
        raise UserError(
            f"The model outputs {logits[transform, first].tolist()} for {paths.iloc[first]} and is not finite for "
            f"{broken.sum()} of {len(paths)} images, so no prediction is written. A model gives NaN when its "
            f"training diverged: retrain it with a lower learning rate."
        )
    return np.array([probability_of_all(transformed) for transformed in logits])


def probability_of_kind(views: np.ndarray, kind: str) -> np.ndarray:
    """A prediction kind's P(ALL) from :func:`view_probabilities`: plain the first view's, tta the views' mean."""
    return views.mean(axis=0) if kind == TTA else views[0]


def predict_probability_of_all(
    model: keras.Model, cache: ImageCache, paths: pd.Series, batch_size: int, test_time_augmentation: bool = False
) -> np.ndarray:
    """P(ALL) for the cached images of ``paths``, in their order; with ``test_time_augmentation`` the mean P(ALL)
    over the eight dihedral transforms of each image (:func:`view_probabilities`)."""
    views = view_probabilities(model, cache, paths, batch_size, test_time_augmentation)
    return probability_of_kind(views, TTA if test_time_augmentation else PLAIN)


def inference_ms_per_image(
    model: keras.Model, images: np.ndarray, batch_size: int, test_time_augmentation: bool = False
) -> float:
    """Mean milliseconds per image of ``predict_on_batch`` over ``images`` held in memory: the model's own
    speed, without the input side (Table 2's inference times; ``tests/benchmark.py prediction`` compares
    the workflow's prediction with it). With ``test_time_augmentation`` each image costs its eight views
    (:func:`_timed_calls`)."""
    # Full batches only: a ragged last batch would time the building of a second graph.
    usable = len(images) - len(images) % batch_size or len(images)
    calls = _timed_calls(images[:usable], batch_size, test_time_augmentation)
    model.predict_on_batch(next(calls))  # warm-up: the first call builds the predict graph
    start = time.perf_counter()
    for batch in _timed_calls(images[:usable], batch_size, test_time_augmentation):
        model.predict_on_batch(batch)
    return (time.perf_counter() - start) * 1000 / usable


def _timed_calls(images: np.ndarray, batch_size: int, test_time_augmentation: bool):
    """The inputs of the timed calls, made as they are timed. With test-time augmentation at batch 1 one call
    holds an image's eight views (how images that come one at a time are served); at a larger batch size a
    call holds one transform of a batch, as ``predict_run`` serves them."""
    if test_time_augmentation and batch_size == 1:
        for index in range(len(images)):
            image = images[index : index + 1]
            yield np.concatenate([dihedral_transform(image, *transform) for transform in DIHEDRAL_TRANSFORMS])
        return
    for first in range(0, len(images), batch_size):
        for transform in _transforms(test_time_augmentation):
            yield dihedral_transform(images[first : first + batch_size], *transform)


@dataclass(frozen=True)
class PredictionFiles:
    """Where one kind of a run's predictions goes (plain, or with test-time augmentation): a prediction table per
    held-out subset (``subsets``: val/test/external -> TSV), the inference stats, and optionally the final-phase
    images' P(ALL) (``final_phase``: a TSV of ``path, p_all`` in image-number order, which the challenge
    submission averages over the seeds)."""

    subsets: Mapping[str, str | os.PathLike]
    stats: str | os.PathLike
    final_phase: str | os.PathLike | None = None


def predict_run(
    model_path: str | os.PathLike,
    split: str | os.PathLike,
    cache: str | os.PathLike,
    batch_size: int,
    outputs: Mapping[str, PredictionFiles],
    final_phase_cache: str | os.PathLike | None = None,
    timing_images: int = 200,
    threads: int | None = None,
) -> dict[str, dict]:
    """Every prediction of one trained run from one load of its model: per kind in ``outputs`` (plain; tta: each
    P(ALL) the mean over the eight dihedral transforms) the held-out subsets, the inference timings and, given
    ``final_phase_cache``, the final-phase images. Returns each kind's stats.

    A subset table has ``path, subject, label, p_all, pred``: one row per split image of the subset, in split
    order; ``pred`` is ALL when p_all >= 0.5; a subset without images gets a header-only table. The stats hold
    inference ms/image at ``batch_size`` and at batch 1, measured on at most ``timing_images`` cached test
    images (with TTA covering the eight passes). ``threads`` limits the backend's CPU threads (the rule's).
    Nothing is written until every prediction is made: a failing one leaves no table behind.
    """
    if threads:
        backend.limit_cpu_threads(threads)
    unknown = sorted({subset for files in outputs.values() for subset in files.subsets} - set(PREDICTED_SUBSETS))
    if unknown:
        raise UserError(f"Cannot predict subset(s) {unknown}; predictions cover {list(PREDICTED_SUBSETS)}.")
    if final_phase_cache is None and any(files.final_phase is not None for files in outputs.values()):
        raise ValueError("Final-phase predictions need final_phase_cache.")
    model = load_model(model_path)
    table = read_split(split)
    image_cache = ImageCache.open(cache, model.input_shape[1])
    if final_phase_cache is not None:
        final_phase = ImageCache.open(final_phase_cache, model.input_shape[1], rule="build_final_phase_cache")
        final_paths = pd.Series(final_phase.row_of_path.index)
        # Unusable image names fail before any model runs.
        final_paths = final_paths.iloc[final_phase_order(final_paths)].reset_index(drop=True)

    # Each image is predicted once: the plain P(ALL) is the first of the views that TTA averages.
    test_time_augmentation = TTA in outputs
    subsets = list(dict.fromkeys(subset for files in outputs.values() for subset in files.subsets))
    held_out = _held_out_views(model, table, image_cache, subsets, batch_size, test_time_augmentation)
    if not held_out:
        raise UserError(f"Split {split} has no {'/'.join(subsets)} images to predict; rebuild the split.")
    if final_phase_cache is not None:
        final_views = view_probabilities(model, final_phase, final_paths, batch_size, test_time_augmentation)
        log.info("final phase: predicted %d images", len(final_paths))

    tables, all_stats = {}, {}
    for kind, files in outputs.items():
        predicted = {}
        for subset in files.subsets:
            if subset in held_out:
                frame, views = held_out[subset]
                p_all = probability_of_kind(views, kind)
                predicted[subset] = frame.assign(p_all=p_all, pred=class_calls(p_all))
                share = (predicted[subset]["pred"] == POSITIVE_CLASS).mean()
                log.info(
                    "%s (%s): %d images, %.1f %% predicted %s", subset, kind, len(frame), 100 * share, POSITIVE_CLASS
                )
            tables[files.subsets[subset]] = predicted.get(subset, pd.DataFrame(columns=list(PREDICTION_COLUMNS)))
        if files.final_phase is not None:
            tables[files.final_phase] = pd.DataFrame(
                {"path": final_paths, "p_all": probability_of_kind(final_views, kind)}
            )
        # Time on test images when there are any; read into memory first so disk speed is not timed.
        timing_frame = predicted.get("test", next(iter(predicted.values())))
        timing_rows = np.sort(image_cache.rows_for(timing_frame["path"]))[:timing_images]
        all_stats[kind] = _inference_stats(
            model, np.asarray(image_cache.images[timing_rows]), batch_size, kind == TTA, predicted
        )
    for out_path, frame in tables.items():
        write_tsv(frame, out_path)
    for kind, files in outputs.items():
        write_json(all_stats[kind], files.stats)
    return all_stats


def _held_out_views(
    model: keras.Model,
    table: pd.DataFrame,
    image_cache: ImageCache,
    subsets,
    batch_size: int,
    test_time_augmentation: bool,
) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Per subset of ``subsets`` that has images in the split ``table``: its ``path, subject, label`` rows and
    their :func:`view_probabilities`."""
    held_out = {}
    for subset in subsets:
        frame = table.loc[table["subset"] == subset, ["path", "subject", "label"]]
        if frame.empty:
            log.warning("The split has no %s images; its prediction table will be empty", subset)
            continue
        views = view_probabilities(model, image_cache, frame["path"], batch_size, test_time_augmentation)
        held_out[subset] = frame, views
    return held_out


def _inference_stats(
    model: keras.Model,
    timing_batch: np.ndarray,
    batch_size: int,
    test_time_augmentation: bool,
    predicted: Mapping[str, pd.DataFrame],
) -> dict:
    stats = {
        "batch_size": batch_size,
        "inference_ms_per_image_at_batch_size": inference_ms_per_image(
            model, timing_batch, batch_size, test_time_augmentation
        ),
        "inference_ms_per_image_at_batch_1": inference_ms_per_image(model, timing_batch, 1, test_time_augmentation),
        "timing_images": len(timing_batch),
        "test_time_augmentation": test_time_augmentation,
        "passes_per_image": len(_transforms(test_time_augmentation)),
        "images_predicted": {subset: len(frame) for subset, frame in predicted.items()},
        "device": backend.device_description(),
        "keras_backend": backend.backend_name(),
    }
    log.info(
        "Inference%s: %.2f ms/image at batch %d, %.2f ms/image at batch 1 (%s)",
        " with TTA" if test_time_augmentation else "",
        stats["inference_ms_per_image_at_batch_size"],
        batch_size,
        stats["inference_ms_per_image_at_batch_1"],
        stats["device"],
    )
    return stats
