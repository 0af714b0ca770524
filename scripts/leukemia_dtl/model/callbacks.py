"""The callbacks of a training run besides its resume store: per-epoch progress lines, device-clock epoch
timing (training and validation apart) and the check that stops a run whose loss became NaN or infinite."""

from __future__ import annotations

import logging
import math
import time

import keras

from leukemia_dtl.core.errors import UserError

log = logging.getLogger("leukemia_dtl")


class TrainingProgress:
    """Per-epoch timing and progress log lines, hooked into ``fit`` through two callbacks.

    ``timing_callback`` must come before the backup, which then records ``epoch_seconds`` (whole epoch)
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


class DivergenceCheck(keras.callbacks.Callback):
    """Fails the run, naming the run, the epoch and ``remedy``, at the end of an epoch whose training or
    validation loss is NaN or infinite.

    It comes before the backup, so a diverged epoch is never saved, and its error leaves ``fit`` before
    any output is written. ``keras.callbacks.TerminateOnNaN`` only stops ``fit`` (the diverged model would
    then be saved), and it checks every batch, which makes Keras wait for the device at each step.
    """

    def __init__(self, progress: TrainingProgress, remedy: str):
        super().__init__()
        self.progress = progress
        self.remedy = remedy

    def on_epoch_end(self, epoch, logs=None):
        diverged = {name: logs[name] for name in ("loss", "val_loss") if not math.isfinite(logs[name])}
        if diverged:
            values = ", ".join(f"{name} {value}" for name, value in diverged.items())
            raise UserError(
                f"{self.progress.run_name}: training diverged in epoch {epoch + 1}/{self.progress.epochs} "
                f"({values}); no model is written. {self.remedy}"
            )
