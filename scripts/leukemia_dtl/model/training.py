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

The rule script parses the model's config entry (with the tuning's picks over it) once into
:class:`TrainingOptions` and hands that to :func:`train_model`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import keras
import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import file_sha256, write_tsv
from leukemia_dtl.core.run_lock import run_lock
from leukemia_dtl.core.train_stats import write_train_stats
from leukemia_dtl.core.vocabulary import (
    CLASS_NAMES,
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
    """Keras ``fit``'s ``class_weight`` for config ``models.<model_name>.class_weight``: None unless balanced
    (none or absent: the paper's unweighted loss); for balanced, scikit-learn's n / (2 * n_class) on the train
    labels, keyed by output unit (HEM 0, ALL 1). Keras turns them into per-image weights of the
    ``CachedImageBatches`` one-hot labels; validation stays unweighted."""
    if setting != "balanced":
        return None
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


@dataclass(frozen=True)
class TrainingOptions:
    """A model's config entry (``models.<model_name>``) as one training run reads it, with the tuning's picks
    over it. The config schema and rules/common.smk have checked every value when the workflow was parsed, so
    nothing here checks them again; what needs the data (a class missing from the train subset, more
    fine-tuned layers than the base has) is checked when training meets it."""

    model_name: str
    # The entry trained with, tuned values included: recorded in the stats and the resume state's configuration.
    model_options: Mapping
    # The options whose value the tuning picked (its selected.yaml), not the models block.
    tuned: frozenset[str]
    batch_size: int
    # Of the frozen phase; fine-tuning's epochs follow them.
    epochs: int
    optimizer: str
    learning_rate: float
    fine_tune: FineTuning | None
    class_weight: str | None

    @classmethod
    def from_config(
        cls, model_name: str, model_options: Mapping, tuned_hyperparameters: Mapping | None = None
    ) -> TrainingOptions:
        """The options of ``models.<model_name>`` (``model_options``), with ``tuned_hyperparameters`` (the
        values of a tuning's ``selected.yaml``) over them."""
        tuned = dict(tuned_hyperparameters or {})
        options = {**model_options, **tuned}
        batch_size, epochs, optimizer, learning_rate = (options[name] for name in MODEL_OPTION_GROUPS["training"])
        return cls(
            model_name=model_name,
            model_options=MappingProxyType(options),
            tuned=frozenset(tuned),
            batch_size=batch_size,
            epochs=epochs,
            optimizer=optimizer,
            learning_rate=learning_rate,
            fine_tune=FineTuning(**options["fine_tune"]) if options.get("fine_tune") else None,
            class_weight=options.get("class_weight"),
        )

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.fine_tune.epochs if self.fine_tune else 0)

    @property
    def classifier_options(self) -> dict:
        """What :func:`classifiers.build_classifier` takes."""
        return builder_options(self.model_options)

    @property
    def divergence_remedy(self) -> str:
        """What to change when the frozen phase's loss diverges: the learning rate, where it was set."""
        setting = (
            f"tuning.grid.learning_rate (the tuning picked {self.learning_rate}: its selected.yaml)"
            if "learning_rate" in self.tuned
            else f"models.{self.model_name}.learning_rate ({self.learning_rate})"
        )
        return f"Lower {setting} and rerun."


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
    options: TrainingOptions,
    layers: list[keras.layers.Layer],
    class_weight: dict[int, float] | None,
    progress: TrainingProgress,
    backup: ResumableBackup,
    tensorboard_dir: str | os.PathLike | None = None,
) -> tuple[list[dict], int]:
    """The phase after the frozen one, on the model the frozen phase left: ``layers`` of the base (from
    :func:`classifiers.layers_to_fine_tune`) train too, with a fresh optimizer at the fine-tuning learning
    rate, for the epochs after ``options.epochs``; ``backup`` (holding the frozen phase's history) resumes it.
    Returns the history of every epoch and the number of trainable parameters of this phase."""
    fine_tune = options.fine_tune
    unfreeze_for_fine_tuning(model, layers)
    compile_classifier(model, optimizer=options.optimizer, learning_rate=fine_tune.learning_rate)
    params_trainable = trainable_parameters(model)
    log.info(
        "%s: fine-tuning in epochs %d-%d: %d base layers from %s up, %d trainable parameters, learning rate %g",
        progress.run_name,
        options.epochs + 1,
        options.total_epochs,
        len(layers),
        layers[0].name,
        params_trainable,
        fine_tune.learning_rate,
    )
    remedy = f"Lower models.{options.model_name}.fine_tune.learning_rate ({fine_tune.learning_rate}) and rerun."
    fit_phase(
        model,
        train_batches,
        val_batches,
        first_epoch=options.epochs,
        end_epoch=options.total_epochs,
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


def prepare_backend(precision: str, deterministic: bool, threads: int | None) -> str:
    """Thread limit, determinism and precision, before any model exists; returns the Keras dtype policy."""
    if threads:
        backend.limit_cpu_threads(threads)
    if deterministic:
        backend.enable_determinism()
    return backend.set_precision(precision)


def run_configuration(
    options: TrainingOptions,
    augmentation: Mapping | None,
    image_size: int,
    seed: int,
    policy: str,
    split_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
) -> dict:
    """What a resume state must have been trained with to be resumed (:func:`resume.prepare_backup_dir`)."""
    return {
        "model_name": options.model_name,
        "model_options": dict(options.model_options),
        "augmentation": dict(augmentation or {}),
        "image_size": image_size,
        "seed": seed,
        "precision": policy,
        "split_sha256": file_sha256(split_path),
        "cache_index_sha256": file_sha256(Path(cache_dir) / INDEX_FILE),
        # A backup of Keras weights files (before the .npz checkpoints) is discarded, not failed on.
        "checkpoint": CHECKPOINT_VARIABLES_FILE,
    }


def log_run_start(
    progress: TrainingProgress,
    options: TrainingOptions,
    subsets: Mapping[str, pd.DataFrame],
    image_size: int,
    policy: str,
    class_weight: dict[int, float] | None,
) -> None:
    log.info(
        "%s: %d train / %d val images of %dpx, batch %d, %d epochs, %s on %s (%s, %s)",
        progress.run_name,
        len(subsets["train"]),
        len(subsets["val"]),
        image_size,
        options.batch_size,
        options.epochs,
        options.optimizer,
        backend.device_description(),
        backend.backend_name(),
        policy,
    )
    if class_weight:
        log.info(
            "%s: class weights %s",
            progress.run_name,
            ", ".join(f"{CLASS_NAMES[unit]} {weight:.4f}" for unit, weight in class_weight.items()),
        )


def training_stats(
    options: TrainingOptions,
    *,
    seed: int,
    image_size: int,
    subsets: Mapping[str, pd.DataFrame],
    history: pd.DataFrame,
    progress: TrainingProgress,
    class_weight: dict[int, float] | None,
    model: keras.Model,
    params_trainable: int,
    params_trainable_fine_tune: int | None,
    model_path: str | os.PathLike,
    policy: str,
    wall_seconds: float,
) -> dict:
    """What train_stats.json records of a finished run. ``wall_seconds`` covers this job only;
    training_seconds, seconds_per_epoch and images_per_second come from the ``history``, so they cover every
    epoch across resumes (images_per_second counts training images over training time, validation excluded,
    first-epoch graph building included); peak memories are this process's."""
    train_images = len(subsets["train"])
    return {
        "model": options.model_name,
        "seed": seed,
        # The options trained with: the config entry, or with tuned values over it.
        "model_options": dict(options.model_options),
        "wall_seconds": wall_seconds,
        "training_seconds": float(history["epoch_seconds"].sum()),
        "seconds_per_epoch": float(history["epoch_seconds"].mean()),
        "images_per_second": float(train_images * options.total_epochs / history["train_seconds"].sum()),
        "train_images": train_images,
        "val_images": len(subsets["val"]),
        "batch_size": options.batch_size,
        "image_size": image_size,
        "epochs_run": progress.epochs_run,
        "resumed_from_epoch": options.total_epochs - progress.epochs_run,
        # The frozen phase's epochs are epochs 1..epochs, the fine-tuning phase's the rest.
        "fine_tune_epochs": options.fine_tune.epochs if options.fine_tune else 0,
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


def train_model(
    options: TrainingOptions,
    *,
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
    threads: int | None = None,
    tensorboard_dir: str | os.PathLike | None = None,
) -> dict:
    """Train ``options.model_name`` on subset train, validate on subset val; write model, history and stats.

    The frozen phase trains ``options.epochs`` epochs; with fine_tune, ``fine_tune.epochs`` more train the top
    ``fine_tune.layers`` layers of the base too, and the history numbers them on. ``tensorboard_dir``: also log
    every epoch there for TensorBoard. Returns the stats written to ``stats_path`` (:func:`training_stats`).
    """
    started = time.perf_counter()
    policy = prepare_backend(precision, deterministic, threads)
    backup_dir = Path(backup_dir)
    run_name = f"{options.model_name} seed {seed}"
    # Before anything reads or clears the resume state: a second job on this run stops here.
    with run_lock(backup_dir.with_name(f"{backup_dir.name}.lock"), run_name):
        subsets = read_training_subsets(split_path)
        cache = ImageCache.open(cache_dir, image_size)
        train_batches, val_batches = training_batches(cache, subsets, options.batch_size, seed)
        model = build_seeded_classifier(
            options.model_name, options.classifier_options, cache, subsets, image_size, augmentation, seed
        )
        compile_classifier(model, optimizer=options.optimizer, learning_rate=options.learning_rate)
        params_trainable = trainable_parameters(model)
        class_weight = class_weights(options.model_name, options.class_weight, subsets["train"]["label"])
        if options.fine_tune:
            # Before the frozen phase, so that a count the base cannot give stops the run before it trains.
            setting = f"models.{options.model_name}.fine_tune.layers"
            fine_tuned_layers = layers_to_fine_tune(model, options.fine_tune.layers, setting=setting)
        prepare_backup_dir(
            backup_dir, run_configuration(options, augmentation, image_size, seed, policy, split_path, cache_dir)
        )
        progress = TrainingProgress(run_name, options.total_epochs, len(subsets["train"]))
        backup = ResumableBackup(backup_dir / BACKUP_STATE_DIR, run_name)
        log_run_start(progress, options, subsets, image_size, policy, class_weight)
        # After the last frozen epoch (or nothing, when the backup holds it) the model is the frozen phase's
        # result, which the backup's last checkpoint keeps for a resume in the fine-tuning phase.
        fit_phase(
            model,
            train_batches,
            val_batches,
            first_epoch=0,
            end_epoch=options.epochs,
            class_weight=class_weight,
            backup=backup,
            callbacks=training_callbacks(train_batches, progress, backup, options.divergence_remedy, tensorboard_dir),
        )
        history, params_trainable_fine_tune = backup.history, None
        if options.fine_tune:
            history, params_trainable_fine_tune = fine_tune_phase(
                model,
                train_batches,
                val_batches,
                options=options,
                layers=fine_tuned_layers,
                class_weight=class_weight,
                progress=progress,
                backup=ResumableBackup(backup_dir / FINE_TUNE_STATE_DIR, run_name, history=history),
                tensorboard_dir=tensorboard_dir,
            )
        history = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
        save_model(model, model_path)
        write_tsv(history, history_path)
        stats = training_stats(
            options,
            seed=seed,
            image_size=image_size,
            subsets=subsets,
            history=history,
            progress=progress,
            class_weight=class_weight,
            model=model,
            params_trainable=params_trainable,
            params_trainable_fine_tune=params_trainable_fine_tune,
            model_path=model_path,
            policy=policy,
            wall_seconds=time.perf_counter() - started,
        )
        stats = write_train_stats(stats, stats_path)
        shutil.rmtree(backup_dir)
        log.info(
            "%s: done in %.0f s, %.1f s/epoch, %.0f img/s",
            run_name,
            stats["wall_seconds"],
            stats["seconds_per_epoch"],
            stats["images_per_second"],
        )
        return stats
