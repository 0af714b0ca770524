"""A training whose loss becomes NaN (issue #13, item 1), injected for real through train_model: a learning
rate of 1e30. Beside test_training.py; the divergence check's other cases are in test_callbacks.py."""

from pathlib import Path

import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.model.resume import BACKUP_STATE_DIR
from leukemia_dtl.model.training import train_model
from training_runs import training_arguments


def test_a_diverged_training_fails_naming_run_epoch_and_setting_and_writes_no_model(tmp_path, dataset, tiny_backbone):
    arguments = training_arguments(tmp_path, dataset, learning_rate=1e30)
    with pytest.raises(UserError) as failure:
        train_model(**arguments)
    message = str(failure.value)
    assert "tiny seed 0: training diverged in epoch 1/3" in message
    assert "loss nan" in message
    assert "Lower models.tiny.learning_rate (1e+30)" in message
    assert not Path(arguments["model_path"]).parent.exists()
    # The diverged epoch is not in the resume state either: nothing was saved.
    assert not (Path(arguments["backup_dir"]) / BACKUP_STATE_DIR).exists()
