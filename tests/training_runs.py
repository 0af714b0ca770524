"""Training runs of the tiny test backbone for the model-stage tests: their arguments, and train_model in a
child process that a test can kill (model_stage_fixtures.TINY_BACKBONE registered there as "tiny").

A helper module, not a test module: tests import it instead of each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO
from leukemia_dtl.model.training import TrainingOptions
from model_stage_fixtures import PAPER_AUGMENTATION

TESTS_DIR = REPO / "tests"
SCRIPTS_DIR = REPO / "scripts"
TINY_OPTIONS = {
    "batch_size": 8,
    "epochs": 3,
    "optimizer": "adamax",
    "learning_rate": 0.01,
    "dropout": 0.5,
    "freeze_base": False,
    "weights": "none",
    "normalization": "model",
}


def training_arguments(run_dir: Path, dataset, model_name="tiny", **model_options) -> dict:
    """train_model's arguments for a run under ``run_dir`` on ``dataset`` (split path, cache folder), with
    ``model_options`` over TINY_OPTIONS."""
    split_path, cache_dir = dataset
    return {
        "options": TrainingOptions.from_config(model_name, {**TINY_OPTIONS, **model_options}),
        "augmentation": PAPER_AUGMENTATION,
        "image_size": 32,
        "seed": 0,
        "split_path": str(split_path),
        "cache_dir": str(cache_dir),
        "backup_dir": str(run_dir / "backup"),
        "model_path": str(run_dir / "out" / "model.keras"),
        "history_path": str(run_dir / "out" / "history.tsv"),
        "stats_path": str(run_dir / "out" / "train_stats.json"),
    }


CHILD_SCRIPT = textwrap.dedent("""
    import json, logging, sys
    sys.path[:0] = sys.argv[2:]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from leukemia_dtl.model import classifiers
    from leukemia_dtl.model.training import TrainingOptions, train_model
    from model_stage_fixtures import TINY_BACKBONE
    classifiers.BACKBONES["tiny"] = TINY_BACKBONE
    arguments = json.loads(open(sys.argv[1]).read())
    train_model(TrainingOptions.from_config(*arguments.pop("options")), **arguments)
    """)


def launch_training(run_dir: Path, arguments: dict, keras_backend: str | None = None) -> subprocess.Popen:
    """train_model(**arguments) in a child process, under ``keras_backend`` if given (else this process's). The
    child gets the options as their model name and config entry: no tuned values."""
    options = arguments["options"]
    in_json = {**arguments, "options": [options.model_name, dict(options.model_options)]}
    (run_dir / "arguments.json").write_text(json.dumps(in_json))
    (run_dir / "child.py").write_text(CHILD_SCRIPT)
    backend_choice = {"KERAS_BACKEND": keras_backend} if keras_backend else {}
    return subprocess.Popen(
        [sys.executable, str(run_dir / "child.py"), str(run_dir / "arguments.json"), str(SCRIPTS_DIR), str(TESTS_DIR)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **backend_choice},
    )


def epochs_logged(log_lines: list[str]) -> list[int]:
    """The epochs whose progress lines are among ``log_lines``, in order."""
    return [int(line.split("epoch ")[1].split("/")[0]) for line in log_lines if ": epoch " in line]
