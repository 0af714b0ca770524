"""Training on the image cache: it learns, writes complete outputs, and resumes after a real kill.

Most runs use the tiny test backbone (model_stage_fixtures.TINY_BACKBONE): the paper's backbones
without ImageNet weights (unavailable offline) give features too small to learn from in a few epochs,
and they take tens of seconds per run on two CPU cores. One short VGG-19 run checks the real model.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import FrozenInstanceError
from pathlib import Path

import keras
import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.train_stats import read_train_stats
from leukemia_dtl.core.vocabulary import HISTORY_COLUMNS
from leukemia_dtl.data.splits import read_split
from leukemia_dtl.model import training
from leukemia_dtl.model.callbacks import TrainingProgress
from leukemia_dtl.model.inputs import CachedImageBatches, ImageCache, class_indices
from leukemia_dtl.model.resume import ResumableBackup, prepare_backup_dir
from leukemia_dtl.model.training import FineTuning, TrainingOptions, train_model
from leukemia_dtl.tuning.selection import read_selected_hyperparameters
from training_runs import SCRIPTS_DIR, TINY_OPTIONS, epochs_logged, launch_training, training_arguments

STATS_KEYS = {
    "wall_seconds",
    "training_seconds",
    "seconds_per_epoch",
    "images_per_second",
    "peak_host_memory_mb",
    "peak_accelerator_memory_mb",
    "device",
    "keras_backend",
    "params_total",
    "params_trainable",
    "model_file_mb",
    "epochs_run",
    "resumed_from_epoch",
    "SLURM_JOB_ID",
    "SLURM_JOB_PARTITION",
    "CUDA_VISIBLE_DEVICES",
}


def held_out_accuracy(model_path, dataset, subset="test") -> float:
    split_path, cache_dir = dataset
    split = read_split(split_path)
    frame = split[split["subset"] == subset]
    images = ImageCache.open(cache_dir).images[ImageCache.open(cache_dir).rows_for(frame["path"])]
    outputs = keras.saving.load_model(model_path).predict(np.asarray(images), verbose=0)
    return float((outputs.argmax(axis=1) == class_indices(frame["label"])).mean())


def test_training_learns_and_writes_complete_outputs(tmp_path, dataset, tiny_backbone):
    arguments = training_arguments(tmp_path, dataset)
    stats = train_model(**arguments)

    # 2 of 3 test images are ALL, so always answering ALL scores 0.67.
    assert held_out_accuracy(arguments["model_path"], dataset) >= 0.9
    history = read_tsv(arguments["history_path"])
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["epoch"].tolist() == ["1", "2", "3"]
    assert set(stats) >= STATS_KEYS
    written = read_train_stats(arguments["stats_path"])
    assert written.pop("model_options") == stats.pop("model_options") == TINY_OPTIONS
    assert written == pytest.approx(stats)
    assert (stats["epochs_run"], stats["resumed_from_epoch"]) == (3, 0)
    assert stats["keras_backend"] == keras.backend.backend()
    assert stats["peak_accelerator_memory_mb"] is None or stats["peak_accelerator_memory_mb"] > 0
    assert stats["params_trainable"] == stats["params_total"]  # freeze_base: false
    assert not Path(arguments["backup_dir"]).exists()
    assert sorted(p.name for p in Path(arguments["model_path"]).parent.iterdir()) == [
        "history.tsv",
        "model.keras",
        "train_stats.json",
    ]


@pytest.mark.slow
def test_training_writes_tensorboard_logs_of_every_epoch_when_asked(tmp_path, dataset, tiny_backbone):
    import tensorflow as tf

    arguments = training_arguments(tmp_path, dataset)
    train_model(**arguments, tensorboard_dir=str(tmp_path / "tensorboard"))
    logged_epochs = {}
    for events in (tmp_path / "tensorboard").rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                logged_epochs.setdefault((events.parent.name, value.tag), []).append(event.step)
    assert logged_epochs[("train", "epoch_loss")] == [0, 1, 2]
    assert logged_epochs[("validation", "epoch_accuracy")] == [0, 1, 2]


def test_tuned_hyperparameters_override_the_config_entry(tmp_path):
    selected = tmp_path / "selected.yaml"
    selected.write_text("hyperparameters: {learning_rate: 0.02, batch_size: 16, dropout: 0.3}\nmetric: val_auc\n")
    options = TrainingOptions.from_config("tiny", TINY_OPTIONS, read_selected_hyperparameters(selected))
    assert options.model_options == {**TINY_OPTIONS, "learning_rate": 0.02, "batch_size": 16, "dropout": 0.3}
    assert (options.batch_size, options.learning_rate, options.classifier_options["dropout"]) == (16, 0.02, 0.3)
    assert "tuning.grid.learning_rate (the tuning picked 0.02" in options.divergence_remedy
    assert TrainingOptions.from_config("tiny", TINY_OPTIONS).divergence_remedy == (
        "Lower models.tiny.learning_rate (0.01) and rerun."
    )


def test_training_options_are_parsed_once_and_immutable():
    fine_tune = {"layers": 2, "learning_rate": 1e-5, "epochs": 4}
    entry = {**TINY_OPTIONS, "fine_tune": fine_tune, "class_weight": "balanced"}
    options = TrainingOptions.from_config("tiny", entry)
    assert options.fine_tune == FineTuning(**fine_tune)
    assert (options.epochs, options.total_epochs, options.class_weight) == (3, 7, "balanced")
    assert set(options.classifier_options) == {"weights", "normalization", "freeze_base", "dropout"}
    with pytest.raises(FrozenInstanceError):
        options.epochs = 1
    with pytest.raises(TypeError):
        options.model_options["epochs"] = 1
    entry["epochs"] = 1  # the options keep the entry they were parsed from
    assert options.model_options["epochs"] == 3
    assert TrainingOptions.from_config("tiny", {**TINY_OPTIONS, "fine_tune": None}).total_epochs == 3


@pytest.mark.slow
def test_vgg19_trains_with_a_frozen_base(tmp_path, dataset):
    arguments = training_arguments(tmp_path, dataset, model_name="vgg19", epochs=1, freeze_base=True)
    stats = train_model(**arguments)
    assert stats["params_trainable"] == 1026
    assert read_tsv(arguments["history_path"])["epoch"].tolist() == ["1"]


@pytest.mark.slow
def test_training_resumes_after_sigkill(tmp_path, dataset):
    epochs, kill_after = 4, 2
    arguments = training_arguments(tmp_path, dataset, epochs=epochs)

    first = launch_training(tmp_path, arguments)
    first_log = []
    for line in first.stderr:
        first_log.append(line)
        if epochs_logged([line]) == [kill_after]:
            first.send_signal(signal.SIGKILL)
            break
    first_log += first.stderr.readlines()
    assert first.wait(timeout=60) == -signal.SIGKILL, "".join(first_log)
    # An epoch's log line comes after its backup, so the run stopped with exactly these epochs saved.
    done_before_kill = epochs_logged(first_log)[-1]
    assert kill_after <= done_before_kill < epochs
    assert not Path(arguments["model_path"]).exists()

    second = launch_training(tmp_path, arguments)
    second_log = second.stderr.read()
    assert second.wait(timeout=120) == 0, second_log
    assert f"resuming after epoch {done_before_kill}" in second_log
    assert epochs_logged(second_log.splitlines())[0] == done_before_kill + 1

    history = read_tsv(arguments["history_path"])
    assert history["epoch"].tolist() == [str(epoch) for epoch in range(1, epochs + 1)]
    stats = json.loads(Path(arguments["stats_path"]).read_text())
    assert (stats["resumed_from_epoch"], stats["epochs_run"]) == (done_before_kill, epochs - done_before_kill)
    assert not Path(arguments["backup_dir"]).exists()


def test_a_failure_after_the_last_epoch_loses_no_training(tmp_path, dataset, tiny_backbone, monkeypatch):
    def die_before_the_outputs(*_):
        raise RuntimeError("killed")

    arguments = training_arguments(tmp_path, dataset)
    with monkeypatch.context() as patch:
        patch.setattr(training, "save_model", die_before_the_outputs)
        with pytest.raises(RuntimeError, match="killed"):
            train_model(**arguments)
    stats = train_model(**arguments)
    assert (stats["epochs_run"], stats["resumed_from_epoch"]) == (0, TINY_OPTIONS["epochs"])
    assert held_out_accuracy(arguments["model_path"], dataset) >= 0.9  # the restored, trained weights
    assert read_tsv(arguments["history_path"])["epoch"].tolist() == ["1", "2", "3"]


def test_backup_of_another_configuration_is_discarded(tmp_path):
    backup_dir = tmp_path / "backup"
    prepare_backup_dir(backup_dir, {"seed": 0})
    checkpoint = backup_dir / "state" / "training_metadata.json"
    checkpoint.parent.mkdir()
    checkpoint.write_text('{"epoch": 1}')
    prepare_backup_dir(backup_dir, {"seed": 0})
    assert checkpoint.exists()
    prepare_backup_dir(backup_dir, {"seed": 1})
    assert not checkpoint.exists()


def test_a_foreign_backup_dir_is_never_deleted(tmp_path):
    (tmp_path / "precious.txt").write_text("not a backup")
    with pytest.raises(UserError, match="no training backup"):
        prepare_backup_dir(tmp_path, {"seed": 0})
    assert (tmp_path / "precious.txt").exists()


@pytest.mark.slow
def test_a_second_trainer_of_a_running_run_stops_and_a_dead_ones_lock_is_taken_over(tmp_path, dataset):
    """One writer per run: while a trainer runs (paused here), a second one on the same run stops at once,
    naming it; after the first is SIGKILLed its lock is stale and the next trainer takes it over and resumes."""
    epochs = 6
    arguments = training_arguments(tmp_path, dataset, epochs=epochs)
    first = launch_training(tmp_path, arguments)
    first_log = []
    for line in first.stderr:
        first_log.append(line)
        if epochs_logged([line]) == [1]:
            # Paused, it is alive and holds the run, however fast the rest of its epochs would go.
            first.send_signal(signal.SIGSTOP)
            break
    lock = Path(f"{arguments['backup_dir']}.lock")
    assert json.loads(lock.read_text())["pid"] == first.pid

    (tmp_path / "second").mkdir()
    second = launch_training(tmp_path / "second", arguments)
    second_log = second.stderr.read()
    assert second.wait(timeout=60) != 0, second_log
    assert first.poll() is None, "the second trainer outlived the first: it did not stop at once"
    assert f"is being trained by process {first.pid} on {socket.gethostname()}" in second_log, second_log
    assert ": epoch " not in second_log

    first.send_signal(signal.SIGKILL)
    first_log += first.stderr.readlines()
    assert first.wait(timeout=60) == -signal.SIGKILL
    done_before_kill = epochs_logged(first_log)[-1]
    assert lock.exists()  # a SIGKILL leaves the lock behind

    third = launch_training(tmp_path, arguments)
    third_log = third.stderr.read()
    assert third.wait(timeout=120) == 0, third_log
    assert f"taking over the lock {lock}" in third_log and f"process {first.pid}" in third_log
    assert f"resuming after epoch {done_before_kill}" in third_log
    history = read_tsv(arguments["history_path"])
    assert history["epoch"].tolist() == [str(epoch) for epoch in range(1, epochs + 1)]
    assert not lock.exists()


def test_no_training_callback_makes_keras_wait_for_each_step(tmp_path):
    # Keras dispatches batch ends asynchronously (JAX, PyTorch) only if no callback overrides them without
    # declaring itself async-safe; Keras's BackupAndRestore overrides on_train_batch_end, and undeclared it made each
    # step wait for the GPU before the next batch was fetched.
    batches = CachedImageBatches(np.zeros((4, 8, 8, 3), np.uint8), np.arange(4), batch_size=2)
    backup = ResumableBackup(tmp_path, "run")
    callbacks = training.training_callbacks(batches, TrainingProgress("run", 1, 4), backup, "Lower it.")
    for callback in callbacks:
        for hook in ("on_batch_end", "on_train_batch_end", "on_test_batch_end"):
            overridden = getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook) or (
                hook in vars(callback)
            )
            assert getattr(callback, "async_safe", False) or not overridden, (type(callback).__name__, hook)
    assert backup in callbacks


@pytest.mark.slow
def test_epoch_timings_count_steps_the_device_has_not_finished(tmp_path):
    # JAX returns from each training step before running it (as TensorFlow and PyTorch do on a GPU): a clock
    # read at validation start, before the queued steps ran, charged them to validation, and the workflow
    # reported 25 times the images/s of the same model fed from memory.
    child = textwrap.dedent(
        """
        import json, sys
        import keras, numpy as np
        from leukemia_dtl.model.callbacks import TrainingProgress

        images = np.random.default_rng(0).random((256, 48, 48, 3), np.float32)
        labels = keras.utils.to_categorical(np.arange(256) % 2, 2)
        model = keras.Sequential([
            keras.Input((48, 48, 3)), keras.layers.Conv2D(96, 3), keras.layers.Conv2D(96, 3),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax"),
        ])
        model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
        epochs = []
        model.fit(
            images, labels, validation_data=(images[:4], labels[:4]), epochs=2, batch_size=32, verbose=0,
            callbacks=[
                TrainingProgress("run", 2, 256).timing_callback(),
                keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(dict(logs))),
            ],
        )
        print(json.dumps({"backend": keras.backend.backend(), "epochs": epochs}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child],
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(SCRIPTS_DIR)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["backend"] == "jax"
    for epoch in report["epochs"]:
        # 64 training steps against one validation step of 4 images.
        assert epoch["train_seconds"] > 0.8 * epoch["epoch_seconds"], epoch
