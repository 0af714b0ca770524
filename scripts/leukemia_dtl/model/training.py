"""Train one classifier with one seed: ``model.fit`` on the image cache, resumable after a kill.

Resume state lives in ``backup_dir`` (outside the rule's outputs, which Snakemake deletes before a
rerun): ``keras.callbacks.BackupAndRestore`` keeps the weights, optimizer state and epoch there, and
``keras.callbacks.CSVLogger`` appends each finished epoch to the history beside it, so a rerun continues
at the first unfinished epoch and the final history covers every epoch once. The directory is deleted
after the outputs are written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import write_json, write_tsv
from leukemia_dtl.core.run_lock import run_lock
from leukemia_dtl.core.vocabulary import (
    HISTORY_COLUMNS,
    INDEX_FILE,
    MODEL_OPTION_GROUPS,
    TRAINING_SUBSETS,
    drop_model_options,
)
from leukemia_dtl.model import backend
from leukemia_dtl.model.classifiers import build_classifier, compile_classifier, save_model
from leukemia_dtl.model.imagenet_weights import explain_missing_imagenet_weights
from leukemia_dtl.model.inputs import (
    CachedImageBatches,
    ImageCache,
    IndexedArray,
    class_indices,
    read_split,
)
from leukemia_dtl.tuning.selection import read_selected_hyperparameters

log = logging.getLogger("leukemia_dtl")

# Resume state inside backup_dir: the CSVLogger history and BackupAndRestore's checkpoints.
BACKUP_HISTORY_FILE = "history.csv"
BACKUP_STATE_DIR = "state"

# Training images whose statistics initialise a random base's BatchNormalization (weights: none).
CALIBRATION_IMAGES = 256


class TrainingProgress:
    """Per-epoch timing and progress log lines, hooked into ``fit`` through two callbacks.

    ``timing_callback`` must come before CSVLogger, which then records ``epoch_seconds`` (whole epoch)
    and ``train_seconds`` (validation excluded) with the metrics, so timings survive a resume too.
    ``logging_callback`` comes last, so an epoch's log line means that epoch is backed up.
    """

    def __init__(self, run_name: str, epochs: int, train_images: int):
        self.run_name = run_name
        self.epochs = epochs
        self.train_images = train_images
        self.epochs_run = 0

    def timing_callback(self) -> keras.callbacks.Callback:
        return EpochTimer(self)

    def logging_callback(self) -> keras.callbacks.Callback:
        return keras.callbacks.LambdaCallback(on_epoch_end=self._log_epoch)

    def _log_epoch(self, epoch, logs):
        log.info(
            "%s: epoch %d/%d loss %.4f accuracy %.4f val_loss %.4f val_accuracy %.4f (%.1f s, %.0f img/s)",
            self.run_name,
            epoch + 1,
            self.epochs,
            logs["loss"],
            logs["accuracy"],
            logs["val_loss"],
            logs["val_accuracy"],
            logs["epoch_seconds"],
            self.train_images / logs["train_seconds"],
        )


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` and ``train_seconds`` to each epoch's logs.

    Under JAX (and TensorFlow or PyTorch on a GPU) ``fit`` returns from a step before the device has run
    it, so the clock is read only once the model's variables are computed: otherwise the training steps
    still queued when validation starts are charged to validation.
    """

    def __init__(self, progress: TrainingProgress):
        super().__init__()
        self.progress = progress

    def _device_clock(self) -> float:
        for variable in [self.model.optimizer.iterations, *self.model.metrics_variables]:
            keras.ops.convert_to_numpy(variable)
        return time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        if self.progress.epochs_run == 0 and epoch > 0:
            log.info("%s: resuming after epoch %d from the backup", self.progress.run_name, epoch)
        self._epoch_start = self._device_clock()
        self._validation_seconds = 0.0

    def on_test_begin(self, logs=None):
        self._validation_start = self._device_clock()

    def on_test_end(self, logs=None):
        self._validation_seconds += self._device_clock() - self._validation_start

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = self._device_clock() - self._epoch_start
        logs["train_seconds"] = logs["epoch_seconds"] - self._validation_seconds
        self.progress.epochs_run += 1


def file_digest(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def epoch_backup(state_dir: Path) -> keras.callbacks.BackupAndRestore:
    """``BackupAndRestore`` after every epoch, declared safe for Keras's asynchronous batch-end dispatch.

    BackupAndRestore overrides ``on_train_batch_end`` (it acts there only with an integer ``save_freq``),
    and Keras then turns the dispatch of batch ends synchronous: each step waits for the accelerator to
    finish before the next batch is fetched, so input and compute no longer overlap on a GPU.
    ``delete_checkpoint=False``: a kill between the end of fit and the outputs must not lose the run.
    """
    backup = keras.callbacks.BackupAndRestore(state_dir, double_checkpoint=True, delete_checkpoint=False)
    backup.async_safe = True
    return backup


def training_callbacks(
    train_batches: CachedImageBatches, progress: TrainingProgress, backup_dir: Path
) -> list[keras.callbacks.Callback]:
    """Per epoch, in order: the epoch's batch draw, timing, the history row, the backup of weights and
    optimizer (both in ``backup_dir``), the log line. None acts on batch ends, so
    Keras dispatches those asynchronously (JAX, PyTorch) and never waits on the accelerator inside an epoch."""
    return [
        keras.callbacks.LambdaCallback(on_epoch_begin=train_batches.set_epoch),
        progress.timing_callback(),
        keras.callbacks.CSVLogger(str(backup_dir / BACKUP_HISTORY_FILE), append=True),
        epoch_backup(backup_dir / BACKUP_STATE_DIR),
        progress.logging_callback(),
    ]


def prepare_backup_dir(backup_dir: Path, run_config: dict) -> None:
    """Keep a backup only if it was made by the same training configuration; else start afresh."""
    config_file = backup_dir / "run_config.json"
    run_config = json.loads(json.dumps(run_config, sort_keys=True))  # as it reads back from the file
    if config_file.exists():
        if json.loads(config_file.read_text()) == run_config:
            return
        log.warning("Discarding the backup in %s: it belongs to another configuration", backup_dir)
        shutil.rmtree(backup_dir)
    elif backup_dir.exists() and any(backup_dir.iterdir()):
        # Never delete a directory this code did not create: the path may be misconfigured.
        raise UserError(
            f"backup_dir {backup_dir} holds files but no training backup; point backup_dir to a new directory."
        )
    backup_dir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(run_config, sort_keys=True))


def read_history(csv_path: Path, epochs: int) -> pd.DataFrame:
    """The CSVLogger history, one row per epoch 1..epochs.

    An epoch can appear twice: a kill after CSVLogger wrote it but before BackupAndRestore saved it
    makes the rerun train it again; the rerun's row is the one that produced the final weights.
    """
    history = pd.read_csv(csv_path).drop_duplicates("epoch", keep="last").sort_values("epoch")
    history["epoch"] += 1
    if history["epoch"].tolist() != list(range(1, epochs + 1)):
        raise RuntimeError(f"{csv_path} covers epochs {history['epoch'].tolist()}, not 1..{epochs}")
    return history[list(HISTORY_COLUMNS)]


def read_training_subsets(split_path: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The split's train and val rows, in split order; both must be non-empty."""
    split = read_split(split_path)
    subsets = {name: split[split["subset"] == name] for name in TRAINING_SUBSETS}
    for name, subset in subsets.items():
        if subset.empty:
            raise UserError(f"Split file {split_path} has no {name} images; rebuild the split.")
    return subsets


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
    tuned_hyperparameters_path: str | os.PathLike | None = None,
    threads: int | None = None,
) -> dict:
    """Train ``model_name`` on subset train, validate on subset val; write model, history and stats.

    ``model_options`` is the model's config entry: batch_size, epochs, optimizer, learning_rate for
    training, everything else (weights, normalization, freeze_base, dropout, dense_units) for
    :func:`classifiers.build_classifier`; ``tuned_hyperparameters_path`` (a tuning ``selected.yaml``)
    overrides them with the selected values. Returns the stats written to ``stats_path``: wall_seconds
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

    if tuned_hyperparameters_path:
        model_options = {**model_options, **read_selected_hyperparameters(tuned_hyperparameters_path)}
    training_options = MODEL_OPTION_GROUPS["training"]
    missing = [name for name in training_options if name not in model_options]
    if missing:
        raise UserError(f"models.{model_name} lacks {missing}; it needs {list(training_options)}.")
    batch_size, epochs, optimizer, learning_rate = (model_options[name] for name in training_options)
    options = drop_model_options(model_options, ["training"])

    backup_dir = Path(backup_dir)
    run_name = f"{model_name} seed {seed}"
    # Before anything reads or clears the resume state: a second job on this run stops here.
    with run_lock(backup_dir.with_name(f"{backup_dir.name}.lock"), run_name):
        subsets = read_training_subsets(split_path)
        cache = ImageCache.open(cache_dir, image_size)
        train_batches, val_batches = training_batches(cache, subsets, batch_size, seed)
        model = build_seeded_classifier(model_name, options, cache, subsets, image_size, augmentation, seed)
        compile_classifier(model, optimizer=optimizer, learning_rate=learning_rate)

        run_config = {
            "model_name": model_name,
            "model_options": dict(model_options),
            "augmentation": dict(augmentation or {}),
            "image_size": image_size,
            "seed": seed,
            "precision": policy,
            "split_sha256": file_digest(split_path),
            "cache_index_sha256": file_digest(Path(cache_dir) / INDEX_FILE),
        }
        prepare_backup_dir(backup_dir, run_config)
        history_csv = backup_dir / BACKUP_HISTORY_FILE
        train_images = len(subsets["train"])
        progress = TrainingProgress(run_name, epochs, train_images)
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
        model.fit(
            train_batches,
            validation_data=val_batches,
            epochs=epochs,
            # CachedImageBatches already draws new batches each epoch, reproducibly across a resume.
            shuffle=False,
            verbose=0,
            callbacks=training_callbacks(train_batches, progress, backup_dir),
        )

        history = read_history(history_csv, epochs)
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
            "images_per_second": float(train_images * epochs / history["train_seconds"].sum()),
            "train_images": train_images,
            "val_images": len(subsets["val"]),
            "batch_size": batch_size,
            "image_size": image_size,
            "epochs_run": progress.epochs_run,
            "resumed_from_epoch": epochs - progress.epochs_run,
            "params_total": model.count_params(),
            "params_trainable": int(sum(np.prod(weight.shape) for weight in model.trainable_weights)),
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
