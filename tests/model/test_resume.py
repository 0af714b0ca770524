"""The resume store (model/resume.py) against the faults it exists for (issue #13, item 4): resume state
damaged as a kill or a full disk leaves it, a frozen weight that training changes, and a deterministic run
SIGKILLed halfway and resumed (under TensorFlow and under JAX).

One training subprocess (one per Keras backend), SIGKILLed after its second epoch, makes the resume state
that the other tests damage (each on its own copy) and resume in this process; the tiny test backbone keeps
each run at seconds.
"""

import json
import logging
import shutil
import signal
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_backends import backend_params
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.vocabulary import HISTORY_COLUMNS, PLAIN, PREDICTED_SUBSETS
from leukemia_dtl.model import classifiers
from leukemia_dtl.model.inference import PredictionFiles, predict_run
from leukemia_dtl.model.resume import (
    BACKUP_CONFIG_FILE,
    BACKUP_STATE_DIR,
    CHECKPOINT_EPOCH_FILE,
    CHECKPOINT_VARIABLES_FILE,
    ResumableBackup,
)
from leukemia_dtl.model.training import train_model
from training_runs import epochs_logged, launch_training, training_arguments

EPOCHS = 4
KILL_AFTER = 2
# A frozen base, as the paper trains: the checkpoints hold the head, the resume finds the base as it was.
KILLED_RUN = {"epochs": EPOCHS, "freeze_base": True}


def truncate(path: Path) -> None:
    """What a kill during the write, or a full disk, leaves: the file's first half."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def history_epochs(arguments: dict) -> list[int]:
    return read_tsv(arguments["history_path"])["epoch"].astype(int).tolist()


@pytest.fixture(scope="module")
def kill_a_run(tmp_path_factory, dataset):
    """A function of a Keras backend that gives, made once per backend, a deterministic training of EPOCHS
    epochs under it, SIGKILLed after epoch KILL_AFTER or a little later: (its arguments, a pristine copy of its
    resume state, the epochs it finished)."""
    killed = {}

    def killed_run_under(keras_backend: str) -> tuple[dict, Path, int]:
        if keras_backend in killed:
            return killed[keras_backend]
        run_dir = tmp_path_factory.mktemp(f"killed_{keras_backend}")
        arguments = {**training_arguments(run_dir, dataset, **KILLED_RUN), "deterministic": True}
        child = launch_training(run_dir, arguments, keras_backend)
        log = []
        for line in child.stderr:
            log.append(line)
            if epochs_logged([line]) == [KILL_AFTER]:
                child.send_signal(signal.SIGKILL)
                break
        log += child.stderr.readlines()
        assert child.wait(timeout=60) == -signal.SIGKILL, "".join(log)
        done = epochs_logged(log)[-1]
        assert KILL_AFTER <= done < EPOCHS
        pristine = run_dir / "pristine_backup"
        shutil.copytree(arguments["backup_dir"], pristine)
        killed[keras_backend] = arguments, pristine, done
        return killed[keras_backend]

    return killed_run_under


@pytest.fixture(scope="module")
def killed_run(kill_a_run):
    """The killed run under TensorFlow, this process's backend, so that the tests below resume it here."""
    return kill_a_run("tensorflow")


def resumable_copy(killed_run, run_dir: Path) -> tuple[dict, Path]:
    """Arguments that resume a copy of the killed run's resume state under ``run_dir``, and the copy's
    checkpoint folder. The run is the same, so the copy is resumed; determinism stays off in this process."""
    arguments, pristine, _ = killed_run
    split_and_cache = (arguments["split_path"], arguments["cache_dir"])
    arguments = training_arguments(run_dir, split_and_cache, **KILLED_RUN)
    shutil.copytree(pristine, arguments["backup_dir"])
    return arguments, Path(arguments["backup_dir"]) / BACKUP_STATE_DIR


def weights_one_epoch_ahead(state: Path) -> None:
    """A kill between the weights and the epoch file: new weights, the previous checkpoint's epoch file."""
    shutil.copyfile(state / f"{CHECKPOINT_EPOCH_FILE}.bkp", state / CHECKPOINT_EPOCH_FILE)


def both_epoch_files_truncated(state: Path) -> None:
    truncate(state / CHECKPOINT_EPOCH_FILE)
    truncate(state / f"{CHECKPOINT_EPOCH_FILE}.bkp")


def flip_a_byte(path: Path) -> None:
    """What a node crash can leave of a file whose data had not reached the disk: other bytes, same size."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def both_checkpoints_of_another_base(state: Path) -> None:
    """Checkpoints whose epoch files record other frozen weights (another ImageNet file, say) than the base
    the resumed run builds."""
    for epoch_file in (state / CHECKPOINT_EPOCH_FILE, state / f"{CHECKPOINT_EPOCH_FILE}.bkp"):
        epoch_state = json.loads(epoch_file.read_text())
        epoch_state["frozen_sha256"] = "0" * 64
        epoch_file.write_text(json.dumps(epoch_state))


def resume_after(damage, killed_run, tmp_path, caplog) -> tuple[dict, dict]:
    """Train again from a copy of the killed run's resume state after ``damage`` to it."""
    arguments, state = resumable_copy(killed_run, tmp_path)
    damage(state)
    with caplog.at_level(logging.WARNING, logger="leukemia_dtl"):
        stats = train_model(**arguments)
    return arguments, stats


@pytest.mark.slow  # the killed_run fixture trains in a child process
@pytest.mark.parametrize(
    ("damage", "warning"),
    [
        (
            lambda state: truncate(state / CHECKPOINT_EPOCH_FILE),
            f"{CHECKPOINT_VARIABLES_FILE} + {CHECKPOINT_EPOCH_FILE} is damaged",
        ),
        (
            lambda state: truncate(state / CHECKPOINT_VARIABLES_FILE),
            f"{CHECKPOINT_VARIABLES_FILE} + {CHECKPOINT_EPOCH_FILE} is damaged",
        ),
        (lambda state: flip_a_byte(state / CHECKPOINT_VARIABLES_FILE), "Bad CRC-32"),
        (weights_one_epoch_ahead, "the weights are at step"),
    ],
    ids=[
        "truncated epoch file",
        "truncated weights",
        "a flipped byte in the weights",
        "weights one epoch ahead of the epoch file",
    ],
)
def test_a_damaged_checkpoint_is_reported_and_the_previous_one_resumed(
    tmp_path, killed_run, tiny_backbone, caplog, damage, warning
):
    arguments, stats = resume_after(damage, killed_run, tmp_path, caplog)
    assert warning in caplog.text
    done = killed_run[2]
    assert (stats["resumed_from_epoch"], stats["epochs_run"]) == (done - 1, EPOCHS - done + 1)
    assert history_epochs(arguments) == list(range(1, EPOCHS + 1))


@pytest.mark.slow  # the killed_run fixture trains in a child process
@pytest.mark.parametrize(
    ("damage", "warning"),
    [
        (both_epoch_files_truncated, "no whole checkpoint in"),
        (both_checkpoints_of_another_base, "it was made on other weights of the frozen layers"),
        (lambda state: truncate(state.parent / BACKUP_CONFIG_FILE), f"its {BACKUP_CONFIG_FILE} is damaged"),
    ],
    ids=["both checkpoints damaged", "checkpoints of another base", "truncated run configuration"],
)
def test_unusable_resume_state_is_reported_and_training_starts_over(
    tmp_path, killed_run, tiny_backbone, caplog, damage, warning
):
    arguments, stats = resume_after(damage, killed_run, tmp_path, caplog)
    assert warning in caplog.text
    assert (stats["resumed_from_epoch"], stats["epochs_run"]) == (0, EPOCHS)
    assert history_epochs(arguments) == list(range(1, EPOCHS + 1))


@pytest.mark.slow  # the killed_run fixture trains in a child process
def test_the_checkpoints_hold_the_head_and_leave_the_frozen_base_out(killed_run):
    """Rewriting a frozen base every epoch cost EfficientNet-B3 0.74-0.97 s per epoch on an H200."""
    _, pristine, _ = killed_run
    for variables_file in (CHECKPOINT_VARIABLES_FILE, f"{CHECKPOINT_VARIABLES_FILE}.bkp"):
        with np.load(pristine / BACKUP_STATE_DIR / variables_file) as saved:
            shapes = {saved[name].shape for name in saved.files}
        # The tiny base's convolutions (3x3, 3 -> 16 -> 32 channels) and the head's logits layer (32 -> 2).
        assert {(3, 3, 3, 16), (3, 3, 16, 32)}.isdisjoint(shapes)
        assert (32, 2) in shapes


def test_a_frozen_weight_that_training_changes_stops_the_run_at_the_first_checkpoint(tmp_path, tiny_backbone):
    """A variable left out of the checkpoints as frozen must not change, or every resume would restore it at
    its initial value: the first checkpoint of each fit compares the frozen weights with their start."""
    model = classifiers.build_classifier("tiny", image_size=32, weights="none", dropout=0.5, freeze_base=True)
    classifiers.compile_classifier(model)
    backup = ResumableBackup(tmp_path, "tiny seed 0")
    assert backup.restore(model) == 0
    base_kernel = next(variable for variable in model.non_trainable_variables if variable.path.endswith("kernel"))
    base_kernel.assign(base_kernel + 1)
    with pytest.raises(RuntimeError, match="tiny seed 0: weights of frozen layers changed in training"):
        backup.on_epoch_end(0, dict.fromkeys(HISTORY_COLUMNS[1:], 0.0))


@pytest.mark.slow
@pytest.mark.parametrize("keras_backend", backend_params("tensorflow", "jax"))
def test_a_deterministic_run_killed_and_resumed_ends_as_an_uninterrupted_one(tmp_path, kill_a_run, keras_backend):
    """Same weights to the bit, so the same predictions: the optimizer state, the random state of dropout
    and augmentation and the batch order all continue where the killed run left them. The runs train under
    ``keras_backend``; their models are compared here, under TensorFlow."""
    arguments, pristine, done = kill_a_run(keras_backend)
    split_and_cache = (arguments["split_path"], arguments["cache_dir"])
    runs = {}
    for name in ("uninterrupted", "resumed"):
        (tmp_path / name).mkdir()
        runs[name] = {**training_arguments(tmp_path / name, split_and_cache, **KILLED_RUN), "deterministic": True}
    shutil.copytree(pristine, runs["resumed"]["backup_dir"])
    children = {name: launch_training(tmp_path / name, run, keras_backend) for name, run in runs.items()}
    logs = {name: child.stderr.read() for name, child in children.items()}
    for name, child in children.items():
        assert child.wait(timeout=120) == 0, logs[name]
    assert f"resuming after epoch {done}" in logs["resumed"]
    stats = {name: json.loads(Path(run["stats_path"]).read_text()) for name, run in runs.items()}
    assert stats["resumed"]["epochs_run"] == EPOCHS - done
    assert {run_stats["keras_backend"] for run_stats in stats.values()} == {keras_backend}

    weights = {name: keras.saving.load_model(run["model_path"]).get_weights() for name, run in runs.items()}
    for uninterrupted, resumed in zip(weights["uninterrupted"], weights["resumed"], strict=True):
        np.testing.assert_array_equal(resumed, uninterrupted)
    predictions = {}
    for name, run in runs.items():
        out_paths = {subset: tmp_path / name / f"{subset}.tsv" for subset in PREDICTED_SUBSETS}
        files = PredictionFiles(out_paths, tmp_path / name / "p.json")
        predict_run(run["model_path"], *split_and_cache, 8, {PLAIN: files}, timing_images=8)
        predictions[name] = {subset: read_tsv(path) for subset, path in out_paths.items()}
    for subset in PREDICTED_SUBSETS:
        assert predictions["resumed"][subset].equals(predictions["uninterrupted"][subset])
