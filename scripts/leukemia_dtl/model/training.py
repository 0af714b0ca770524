"""Train one classifier with one seed: ``model.fit`` on the image cache, resumable after a kill.

Resume state lives in ``backup_dir`` (outside the rule's outputs, which Snakemake deletes before a
rerun): :class:`ResumableBackup` keeps two checkpoints there, each the weights, optimizer state, random
state and history up to its epoch, so a rerun continues at the first unfinished epoch from the newest
whole checkpoint and the final history covers every epoch once. The directory is deleted after the
outputs are written. A loss that becomes NaN or infinite fails the run before that epoch is saved.

Beyond the paper, a model may set ``class_weight: balanced`` (the loss weighs each class by scikit-learn's
balanced weights on the train subset) and ``fine_tune`` (after the frozen phase, a second phase trains the
top layers of the base at its own learning rate; its epochs continue the numbering). Each phase has its
own resume state, so a job killed in the second phase resumes there: the first phase's last checkpoint
restores in place of training it again.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import file_sha256, write_json, write_tsv
from leukemia_dtl.core.run_lock import run_lock
from leukemia_dtl.core.vocabulary import (
    CLASS_NAMES,
    CLASS_WEIGHTS,
    CLASSIFIER_OUTPUT,
    HISTORY_COLUMNS,
    INDEX_FILE,
    MODEL_OPTION_GROUPS,
    TRAINING_SUBSETS,
    builder_options,
)
from leukemia_dtl.data.splits import read_split
from leukemia_dtl.model import backend
from leukemia_dtl.model.callbacks import DivergenceCheck, TrainingProgress
from leukemia_dtl.model.classifiers import (
    build_classifier,
    compile_classifier,
    layers_to_fine_tune,
    save_model,
    unfreeze_for_fine_tuning,
)
from leukemia_dtl.model.imagenet_weights import explain_missing_imagenet_weights
from leukemia_dtl.model.inputs import (
    CachedImageBatches,
    ImageCache,
    IndexedArray,
    class_indices,
)
from leukemia_dtl.model.resume import (
    BACKUP_STATE_DIR,
    CHECKPOINT_VARIABLES_FILE,
    FINE_TUNE_STATE_DIR,
    ResumableBackup,
    prepare_backup_dir,
)

log = logging.getLogger("leukemia_dtl")

# Training images whose statistics initialise a random base's BatchNormalization (weights: none).
CALIBRATION_IMAGES = 256


def training_callbacks(
    train_batches: CachedImageBatches,
    progress: TrainingProgress,
    backup: ResumableBackup,
    remedy: str,
    tensorboard_dir: str | os.PathLike | None = None,
) -> list[keras.callbacks.Callback]:
    """Per epoch, in order: the epoch's batch draw, timing, the divergence check (``remedy`` names the
    setting to change), the backup of weights, optimizer, random state and history, the log line, and with
    ``tensorboard_dir`` the epoch's losses and accuracies as TensorBoard logs there. Only TensorBoard acts
    on batch ends: without it Keras dispatches them asynchronously (JAX, PyTorch) and never waits on the
    accelerator inside an epoch, which is why ``logging.tensorboard`` is off by default."""
    callbacks = [
        keras.callbacks.LambdaCallback(on_epoch_begin=train_batches.set_epoch),
        progress.timing_callback(),
        DivergenceCheck(progress, remedy),
        backup,
        progress.logging_callback(),
    ]
    if tensorboard_dir is not None:
        # Epoch scalars only: batch summaries and graph traces would add work to every step.
        callbacks.append(keras.callbacks.TensorBoard(str(tensorboard_dir), update_freq="epoch", write_graph=False))
    return callbacks


def read_training_subsets(split_path: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The split's train and val rows, in split order; both must be non-empty."""
    split = read_split(split_path)
    subsets = {name: split[split["subset"] == name] for name in TRAINING_SUBSETS}
    for name, subset in subsets.items():
        if subset.empty:
            raise UserError(f"Split file {split_path} has no {name} images; rebuild the split.")
    return subsets


def class_weights(model_name: str, setting: str | None, train_labels: pd.Series) -> dict[int, float] | None:
    """Keras ``fit``'s ``class_weight`` for config ``models.<model_name>.class_weight``: None for none or
    absent (the paper's unweighted loss); for balanced, scikit-learn's n / (2 * n_class) on the train
    labels, keyed by output unit (HEM 0, ALL 1). Keras turns them into per-image weights of the
    ``CachedImageBatches`` one-hot labels; validation stays unweighted."""
    if setting is None or setting == "none":
        return None
    if setting != "balanced":
        raise UserError(f"models.{model_name}.class_weight must be one of {list(CLASS_WEIGHTS)}, not {setting!r}.")
    units = np.arange(len(CLASS_NAMES))
    labels = class_indices(train_labels)
    absent = [CLASS_NAMES[unit] for unit in units if unit not in labels]
    if absent:
        raise UserError(
            f"models.{model_name}.class_weight balanced needs both classes in the train subset, which has no "
            f"{absent} images; rebuild the split or set class_weight: none."
        )
    weights = compute_class_weight("balanced", classes=units, y=labels)
    return {int(unit): float(weight) for unit, weight in zip(units, weights, strict=True)}


@dataclass(frozen=True)
class FineTuning:
    """Config ``models.<name>.fine_tune``: the phase after the frozen one."""

    layers: int
    learning_rate: float
    epochs: int


def trainable_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


def fit_phase(
    model: keras.Model,
    train_batches: CachedImageBatches,
    val_batches: CachedImageBatches,
    *,
    first_epoch: int,
    end_epoch: int,
    class_weight: dict[int, float] | None,
    backup: ResumableBackup,
    callbacks: list[keras.callbacks.Callback],
) -> None:
    """``fit`` over epochs ``first_epoch`` .. ``end_epoch`` - 1 (0-based), or from where ``backup`` (one of
    ``callbacks``) restores."""
    model.fit(
        train_batches,
        validation_data=val_batches,
        initial_epoch=max(first_epoch, backup.restore(model)),
        epochs=end_epoch,
        class_weight=class_weight,
        # CachedImageBatches already draws new batches each epoch, reproducibly across a resume.
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )


def fine_tune_phase(
    model: keras.Model,
    train_batches: CachedImageBatches,
    val_batches: CachedImageBatches,
    *,
    model_name: str,
    fine_tune: FineTuning,
    layers: list[keras.layers.Layer],
    optimizer: str,
    class_weight: dict[int, float] | None,
    progress: TrainingProgress,
    backup: ResumableBackup,
    tensorboard_dir: str | os.PathLike | None = None,
) -> tuple[list[dict], int]:
    """The phase after the frozen one, on the model the frozen phase left: ``layers`` of the base (from
    :func:`classifiers.layers_to_fine_tune`) train too, with a fresh ``optimizer`` at the fine-tuning
    learning rate, for epochs ``progress.epochs - fine_tune.epochs + 1`` .. ``progress.epochs``; ``backup``
    (holding the frozen phase's history) resumes it. Returns the history of every epoch and the number of
    trainable parameters of this phase."""
    unfreeze_for_fine_tuning(model, layers)
    compile_classifier(model, optimizer=optimizer, learning_rate=fine_tune.learning_rate)
    params_trainable = trainable_parameters(model)
    first_epoch = progress.epochs - fine_tune.epochs
    log.info(
        "%s: fine-tuning in epochs %d-%d: %d base layers from %s up, %d trainable parameters, learning rate %g",
        progress.run_name,
        first_epoch + 1,
        progress.epochs,
        len(layers),
        layers[0].name,
        params_trainable,
        fine_tune.learning_rate,
    )
    remedy = f"Lower models.{model_name}.fine_tune.learning_rate ({fine_tune.learning_rate}) and rerun."
    fit_phase(
        model,
        train_batches,
        val_batches,
        first_epoch=first_epoch,
        end_epoch=progress.epochs,
        class_weight=class_weight,
        backup=backup,
        callbacks=training_callbacks(train_batches, progress, backup, remedy, tensorboard_dir),
    )
    return backup.history, params_trainable


def training_batches(
    cache: IndexedArray, subsets: Mapping[str, pd.DataFrame], batch_size: int, seed: int
) -> tuple[CachedImageBatches, CachedImageBatches]:
    """Train batches (fresh seeded order each epoch) and val batches (cache order) of images or features.

    Image cache and feature table rows both follow cache order, so the same seed serves the same
    images in the same batches from either: the tuning fast path trains on exactly the slow path's data.
    """
    return tuple(
        CachedImageBatches(
            cache.array,
            cache.rows_for(subset["path"]),
            class_indices(subset["label"]),
            batch_size=batch_size,
            shuffle_seed=seed if name == "train" else None,
        )
        for name, subset in subsets.items()
    )


def build_seeded_classifier(
    model_name: str,
    options: Mapping,
    cache: ImageCache,
    subsets: Mapping[str, pd.DataFrame],
    image_size: int,
    augmentation: Mapping | None,
    seed: int,
) -> keras.Model:
    """:func:`classifiers.build_classifier` after seeding Keras, with ``CALIBRATION_IMAGES`` of the train
    subset's images drawn by ``seed`` to calibrate a random base (weights: none)."""
    keras.utils.set_random_seed(seed)
    train_rows = cache.rows_for(subsets["train"]["path"])
    count = min(CALIBRATION_IMAGES, len(train_rows))
    calibration_rows = np.sort(np.random.default_rng(seed).choice(train_rows, count, replace=False))
    with explain_missing_imagenet_weights(model_name):
        return build_classifier(
            model_name,
            image_size=image_size,
            augmentation=augmentation,
            calibration_images=np.asarray(cache.images[calibration_rows]),
            **options,
        )


def train_model(
    *,
    model_name: str,
    model_options: Mapping,
    augmentation: Mapping | None,
    image_size: int,
    seed: int,
    split_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    backup_dir: str | os.PathLike,
    model_path: str | os.PathLike,
    history_path: str | os.PathLike,
    stats_path: str | os.PathLike,
    precision: str = "float32",
    deterministic: bool = False,
    tuned_hyperparameters: Mapping | None = None,
    threads: int | None = None,
    tensorboard_dir: str | os.PathLike | None = None,
) -> dict:
    """Train ``model_name`` on subset train, validate on subset val; write model, history and stats.

    ``model_options`` is the model's config entry: batch_size, epochs, optimizer, learning_rate for
    training, fine_tune and class_weight (optional) for the training loop, everything else (weights,
    normalization, freeze_base, dropout, dense_units) for :func:`classifiers.build_classifier`. With
    fine_tune, ``epochs`` frozen epochs are followed by ``fine_tune.epochs`` epochs that train the top
    ``fine_tune.layers`` layers of the base too, with the same optimizer at ``fine_tune.learning_rate``;
    the history numbers them on from epochs + 1. ``tuned_hyperparameters`` (the values of a tuning's
    ``selected.yaml``, read by the rule script) override them. ``tensorboard_dir``: also log every epoch there
    for TensorBoard. Returns the stats written to ``stats_path``: wall_seconds
    covers this job only; training_seconds, seconds_per_epoch and images_per_second come from the history, so
    they cover every epoch across resumes (images_per_second counts training images over training time,
    validation excluded, first-epoch graph building included); peak memories are this process's.
    """
    started = time.perf_counter()
    if threads:
        backend.limit_cpu_threads(threads)
    if deterministic:
        backend.enable_determinism()
    policy = backend.set_precision(precision)

    tuned = dict(tuned_hyperparameters or {})
    model_options = {**model_options, **tuned}
    training_options = MODEL_OPTION_GROUPS["training"]
    missing = [name for name in training_options if name not in model_options]
    if missing:
        raise UserError(f"models.{model_name} lacks {missing}; it needs {list(training_options)}.")
    batch_size, epochs, optimizer, learning_rate = (model_options[name] for name in training_options)
    # The config schema and rules/common.smk refuse an incomplete fine_tune, or one with freeze_base: false.
    fine_tune = FineTuning(**model_options["fine_tune"]) if model_options.get("fine_tune") else None
    total_epochs = epochs + (fine_tune.epochs if fine_tune else 0)
    options = builder_options(model_options)

    backup_dir = Path(backup_dir)
    run_name = f"{model_name} seed {seed}"
    # Before anything reads or clears the resume state: a second job on this run stops here.
    with run_lock(backup_dir.with_name(f"{backup_dir.name}.lock"), run_name):
        subsets = read_training_subsets(split_path)
        cache = ImageCache.open(cache_dir, image_size)
        train_batches, val_batches = training_batches(cache, subsets, batch_size, seed)
        model = build_seeded_classifier(model_name, options, cache, subsets, image_size, augmentation, seed)
        compile_classifier(model, optimizer=optimizer, learning_rate=learning_rate)
        params_trainable = trainable_parameters(model)
        class_weight = class_weights(model_name, model_options.get("class_weight"), subsets["train"]["label"])
        if fine_tune:
            fine_tuned_layers = layers_to_fine_tune(
                model, fine_tune.layers, setting=f"models.{model_name}.fine_tune.layers"
            )

        run_config = {
            "model_name": model_name,
            "model_options": dict(model_options),
            "augmentation": dict(augmentation or {}),
            "image_size": image_size,
            "seed": seed,
            "precision": policy,
            "split_sha256": file_sha256(split_path),
            "cache_index_sha256": file_sha256(Path(cache_dir) / INDEX_FILE),
            # A backup of Keras weights files (before the .npz checkpoints) is discarded, not failed on.
            "checkpoint": CHECKPOINT_VARIABLES_FILE,
        }
        prepare_backup_dir(backup_dir, run_config)
        train_images = len(subsets["train"])
        progress = TrainingProgress(run_name, total_epochs, train_images)
        backup = ResumableBackup(backup_dir / BACKUP_STATE_DIR, run_name)
        learning_rate_setting = (
            f"tuning.grid.learning_rate (the tuning picked {learning_rate}: its selected.yaml)"
            if "learning_rate" in tuned
            else f"models.{model_name}.learning_rate ({learning_rate})"
        )
        remedy = f"Lower {learning_rate_setting} and rerun."
        log.info(
            "%s: %d train / %d val images of %dpx, batch %d, %d epochs, %s on %s (%s, %s)",
            run_name,
            train_images,
            len(subsets["val"]),
            image_size,
            batch_size,
            epochs,
            optimizer,
            backend.device_description(),
            backend.backend_name(),
            policy,
        )
        if class_weight:
            log.info(
                "%s: class weights %s",
                run_name,
                ", ".join(f"{CLASS_NAMES[unit]} {weight:.4f}" for unit, weight in class_weight.items()),
            )
        # After the last frozen epoch (or nothing, when the backup holds it) the model is the frozen phase's
        # result, which the backup's last checkpoint keeps for a resume in the fine-tuning phase.
        fit_phase(
            model,
            train_batches,
            val_batches,
            first_epoch=0,
            end_epoch=epochs,
            class_weight=class_weight,
            backup=backup,
            callbacks=training_callbacks(train_batches, progress, backup, remedy, tensorboard_dir),
        )
        history = backup.history
        params_trainable_fine_tune = None
        if fine_tune:
            history, params_trainable_fine_tune = fine_tune_phase(
                model,
                train_batches,
                val_batches,
                model_name=model_name,
                fine_tune=fine_tune,
                layers=fine_tuned_layers,
                optimizer=optimizer,
                class_weight=class_weight,
                progress=progress,
                backup=ResumableBackup(backup_dir / FINE_TUNE_STATE_DIR, run_name, history=history),
                tensorboard_dir=tensorboard_dir,
            )

        history = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
        save_model(model, model_path)
        write_tsv(history, history_path)
        stats = {
            "model": model_name,
            "seed": seed,
            # The options trained with: the config entry, or with tuned values over it.
            "model_options": dict(model_options),
            "wall_seconds": time.perf_counter() - started,
            "training_seconds": float(history["epoch_seconds"].sum()),
            "seconds_per_epoch": float(history["epoch_seconds"].mean()),
            "images_per_second": float(train_images * total_epochs / history["train_seconds"].sum()),
            "train_images": train_images,
            "val_images": len(subsets["val"]),
            "batch_size": batch_size,
            "image_size": image_size,
            "epochs_run": progress.epochs_run,
            "resumed_from_epoch": total_epochs - progress.epochs_run,
            # The frozen phase's epochs are epochs 1..epochs, the fine-tuning phase's the rest.
            "fine_tune_epochs": fine_tune.epochs if fine_tune else 0,
            "class_weights": (
                {CLASS_NAMES[unit]: weight for unit, weight in class_weight.items()} if class_weight else None
            ),
            "classifier_output": CLASSIFIER_OUTPUT,
            "params_total": model.count_params(),
            "params_trainable": params_trainable,
            "params_trainable_fine_tune": params_trainable_fine_tune,
            "model_file_mb": Path(model_path).stat().st_size / 2**20,
            "peak_host_memory_mb": backend.peak_host_memory_mb(),
            "peak_accelerator_memory_mb": backend.peak_accelerator_memory_mb(),
            "device": backend.device_description(),
            "keras_backend": backend.backend_name(),
            "precision": policy,
            **backend.slurm_context(),
        }
        write_json(stats, stats_path)
        shutil.rmtree(backup_dir)
        log.info(
            "%s: done in %.0f s, %.1f s/epoch, %.0f img/s",
            run_name,
            stats["wall_seconds"],
            stats["seconds_per_epoch"],
            stats["images_per_second"],
        )
        return stats
