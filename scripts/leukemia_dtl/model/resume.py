"""A training run's resume store: :class:`ResumableBackup` keeps two whole checkpoints of a phase in the run's
backup_dir (outside the rule's outputs, which Snakemake deletes before a rerun), and
:func:`prepare_backup_dir` keeps them only for the configuration that made them."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import atomic_path, write_json
from leukemia_dtl.core.vocabulary import (
    HISTORY_COLUMNS,
)

log = logging.getLogger("leukemia_dtl")

# Resume state inside backup_dir: the configuration that made it, and ResumableBackup's checkpoints of
# the (frozen) first phase and of the fine-tuning phase.
BACKUP_CONFIG_FILE = "run_config.json"
BACKUP_STATE_DIR = "state"
FINE_TUNE_STATE_DIR = "fine_tune_state"
CHECKPOINT_VARIABLES_FILE = "latest.variables.npz"
CHECKPOINT_EPOCH_FILE = "training_metadata.json"


class ResumableBackup(keras.callbacks.Callback):
    """Two checkpoints of a training phase, the latest and the one before, restored only whole: call
    :meth:`restore` before ``fit`` and start ``fit`` at the epoch it returns; each epoch's end saves one.

    Each checkpoint is a variables file and an epoch file. The variables file is one NumPy ``.npz`` of every
    variable that training changes: the trainable weights, the statistics of BatchNormalization layers that
    train, the ``SeedGenerator`` states of dropout and augmentation (which Keras's weights files leave out)
    and the optimizer's. The weights of frozen layers (a frozen base: 10.8 of EfficientNet-B3's 11.2 million
    parameters) are left out: Keras's HDF5 file of all of them took 0.74-0.97 s per epoch on an H200
    (docs/benchmarks). The epoch file holds the optimizer's step count, a digest of the frozen weights, and the
    history of the epochs the checkpoint covers, so the history always describes the restored weights: no
    epoch twice, none missing. Without the random state a resumed run would draw epoch 1's random numbers
    again and end with other weights than an uninterrupted run.

    Keras's ``BackupAndRestore`` crashes on an epoch file that a kill or a full disk left truncated (every
    retry again), falls back to the previous checkpoint only when the weights file will not open, cannot tell
    weights one epoch ahead of their epoch file (a kill between the two writes), and resumes through private
    attributes of the model. Here a checkpoint counts only if its epoch file reads, its variables file holds a
    value of the right shape for every variable, both carry the same step count and the model's frozen weights
    have the digest it was made on; else the previous one, else training starts over, each time with a warning
    naming the files.
    """

    def __init__(self, state_dir: Path, run_name: str, history: list[dict] = ()):
        """``history``: the rows of the epochs before this backup's first one (an earlier phase's)."""
        super().__init__()
        self.backup_dir = Path(state_dir)
        self.run_name = run_name
        self.history: list[dict] = list(history)  # one row per epoch, HISTORY_COLUMNS
        latest = (self.backup_dir / CHECKPOINT_VARIABLES_FILE, self.backup_dir / CHECKPOINT_EPOCH_FILE)
        self._checkpoints = [latest, tuple(path.with_name(f"{path.name}.bkp") for path in latest)]

    def restore(self, model: keras.Model) -> int:
        """Sets the compiled ``model`` to the newest whole checkpoint, if any; returns the number of epochs it
        covers (0 without one), where ``fit`` continues."""
        self.set_model(model)
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        self._frozen = frozen_variables(model)
        frozen = {id(variable) for variable in self._frozen}
        self._saved = [variable for variable in [*model.variables, *optimizer.variables] if id(variable) not in frozen]
        self._frozen_digest, self._frozen_checked = frozen_digest(self._frozen), False
        # A checkpoint that fails halfway through loading must not leave its values behind.
        initial_values = [keras.ops.convert_to_numpy(variable) for variable in self._saved]
        latest, previous = self._checkpoints
        found = [checkpoint for checkpoint in (latest, previous) if any(path.exists() for path in checkpoint)]
        for checkpoint in found:
            if checkpoint is previous:
                # The previous checkpoint is restored by copying it over the latest one, which did not restore:
                # the next save then keeps it as the previous checkpoint.
                for source, target in zip(previous, latest, strict=True):
                    if source.exists():
                        shutil.copyfile(source, target)
                    else:
                        target.unlink(missing_ok=True)
            try:
                return self._restore(*latest)
            except (OSError, ValueError, KeyError, TypeError) as error:
                variables_path, epoch_path = checkpoint
                log.warning(
                    "%s: the resume checkpoint %s + %s is damaged or incomplete (%s)",
                    self.run_name,
                    variables_path,
                    epoch_path.name,
                    error,
                )
                for variable, value in zip(self._saved, initial_values, strict=True):
                    variable.assign(value)
        if found:
            log.warning("%s: no whole checkpoint in %s; training starts over", self.run_name, self.backup_dir)
        return 0

    def _restore(self, variables_path: Path, epoch_path: Path) -> int:
        epoch_state = json.loads(epoch_path.read_text())
        if epoch_state["frozen_sha256"] != self._frozen_digest:
            raise ValueError("it was made on other weights of the frozen layers (another base)")
        variables = self._saved
        try:
            with np.load(variables_path) as saved:
                if len(saved.files) != len(variables):
                    raise ValueError(f"{len(saved.files)} saved values for {len(variables)} variables")
                values = [saved[str(index)] for index in range(len(variables))]
        except (zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"the variables file does not read ({error})") from error
        for variable, value in zip(variables, values, strict=True):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{variable.path} is {tuple(variable.shape)}, its saved value {value.shape}")
        # Only after every value is known to fit: a checkpoint restores whole or not at all.
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        steps, saved_steps = int(self.model.optimizer.iterations), epoch_state["optimizer_steps"]
        if saved_steps != steps:
            raise ValueError(f"the weights are at step {steps}, the epoch file at step {saved_steps}")
        epoch = epoch_state["epoch"]
        if [row["epoch"] for row in epoch_state["history"]] != list(range(1, epoch + 1)):
            raise ValueError(f"its history does not cover epochs 1..{epoch} once")
        self.history = epoch_state["history"]
        return epoch

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({"epoch": epoch + 1, **{name: float(logs[name]) for name in HISTORY_COLUMNS[1:]}})
        self._save(epoch + 1)

    def _save(self, epoch: int) -> None:
        """The last checkpoint copied to the previous one's files, then the new variables; the epoch file last
        and atomically, so a checkpoint with a readable epoch file has whole variables."""
        if not self._frozen_checked:
            # Once per fit, after an epoch has trained: a variable counted as frozen that training changed
            # would be restored at its initial value by every resume.
            if frozen_digest(self._frozen) != self._frozen_digest:
                raise RuntimeError(f"{self.run_name}: weights of frozen layers changed in training")
            self._frozen_checked = True
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        for latest, previous in zip(*self._checkpoints, strict=True):
            if latest.exists():
                shutil.copyfile(latest, previous)
        variables_path, epoch_path = self._checkpoints[0]
        values = {str(index): keras.ops.convert_to_numpy(variable) for index, variable in enumerate(self._saved)}
        # Not forced to disk: a node crash that leaves it damaged fails the zip's CRC-32 check on restore, and the
        # previous checkpoint is used.
        with atomic_path(variables_path, durable=False) as partial, open(partial, "wb") as stream:
            np.savez(stream, **values)
        epoch_state = {
            "epoch": epoch,
            "optimizer_steps": int(self.model.optimizer.iterations),
            "frozen_sha256": self._frozen_digest,
            "history": self.history,
        }
        write_json(epoch_state, epoch_path)


def frozen_variables(model: keras.Model) -> list:
    """The variables of ``model`` that training cannot change: those of its layers that do not train (a frozen
    base, whose BatchNormalization then keeps its statistics too)."""
    frozen = {id(variable) for layer in model._flatten_layers() if not layer.trainable for variable in layer.variables}
    return [variable for variable in model.variables if id(variable) in frozen]


def frozen_digest(variables: list) -> str:
    digest = hashlib.sha256()
    for variable in variables:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()


def prepare_backup_dir(backup_dir: Path, run_config: dict) -> None:
    """Keep a backup only if it was made by the same training configuration; else start afresh."""
    config_file = backup_dir / BACKUP_CONFIG_FILE
    run_config = json.loads(json.dumps(run_config, sort_keys=True))  # as it reads back from the file
    if config_file.exists():
        try:
            backup_config = json.loads(config_file.read_text())
        except (OSError, ValueError) as error:
            # Whose backup it is cannot be known, so none of it can be trusted.
            log.warning("Discarding the backup in %s: its %s is damaged (%s)", backup_dir, config_file.name, error)
        else:
            if backup_config == run_config:
                return
            log.warning("Discarding the backup in %s: it belongs to another configuration", backup_dir)
        shutil.rmtree(backup_dir)
    elif backup_dir.exists() and any(backup_dir.iterdir()):
        # Never delete a directory this code did not create: the path may be misconfigured.
        raise UserError(
            f"backup_dir {backup_dir} holds files but no training backup; point backup_dir to a new directory."
        )
    write_json(run_config, config_file)
