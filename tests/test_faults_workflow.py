"""Fault: Snakemake killed with SIGKILL in the middle of a run, then the same command again.

A real kill of the whole process group (Snakemake and its running jobs, as a closed terminal or a dead
login node leaves them) while a training job is between epochs; the rerun must finish on its own (no
`--unlock`), resume the killed training and give the model and predictions an uninterrupted run gives.
"""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import DEMO_SCHEDULING, REPO, SNAKEMAKE
from leukemia_dtl.core.fileio import read_tsv

pytestmark = pytest.mark.workflow

# The demo, cut to one scheme, one seed and the config's hyperparameters, deterministic. Without test-time
# augmentation: its predictions are a function of the model, which the plain predictions already compare.
SMALL_DETERMINISTIC_DEMO = {
    "split": {"schemes": ["random"]},
    "seeds": [0],
    "hyperparameters": "config",
    "deterministic": True,
    "evaluation": {"tta": False},
    "models": {"vgg19": {"epochs": 3}, "efficientnetb3": {"epochs": 4}},
}
KILLED_RUN_LOG = "results/logs/train_model/random/vgg19/seed0.log"
KILLED_RUN_OUTPUTS = [
    "results/models/random/vgg19/seed0/history.tsv",
    "results/predictions/random/vgg19/seed0/test.tsv",
]
# Files that differ between any two runs, killed or not: timings, memory peaks, log lines, and files that
# stamp the time they were written (a .keras file is a zip, PDFs carry a creation date, HDF5 checkpoints in
# resume/ their write times, provenance records the time the job started). The figures are drawn from the tables
# and predictions compared here; the model cards and the run overview show the training times.
RUN_SPECIFIC = ("logs", "benchmarks", "figures", "resume", "model_cards")
TIMING_FILES = (
    "train_stats.json",
    "predict_stats.json",
    "model.keras",
    "provenance.json",
    "table2_compute.tsv",
    "table2_compute.md",
    "runs.tsv",
    "runs.md",
)
TIMING_COLUMNS = ["epoch_seconds", "train_seconds"]


def workflow_command(workdir, overlay, *targets: str) -> list[str]:
    """`make demo`'s command with the overlay, and --rerun-incomplete as the profiles set it; ``targets`` before
    --configfile, which takes every word after it."""
    return [
        *SNAKEMAKE,
        *targets,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        "2",
        *DEMO_SCHEDULING,
        "--rerun-incomplete",
        "--configfile",
        "config/demo.yaml",
        str(overlay),
    ]


def compared_outputs(results) -> set:
    return {
        path.relative_to(results)
        for path in results.rglob("*")
        if path.is_file() and path.parts[len(results.parts)] not in RUN_SPECIFIC and path.name not in TIMING_FILES
    }


def assert_same_numbers(reference, rerun, where):
    """JSON values equal, numbers within 1e-6."""
    if isinstance(reference, dict):
        assert reference.keys() == rerun.keys(), where
        for key in reference:
            assert_same_numbers(reference[key], rerun[key], f"{where}: {key}")
    elif isinstance(reference, float):
        assert rerun == pytest.approx(reference, abs=1e-6, nan_ok=True), where
    else:
        assert reference == rerun, where


def assert_same_output(reference_file, rerun_file, name):
    if name.endswith(".json"):
        assert_same_numbers(json.loads(reference_file.read_text()), json.loads(rerun_file.read_text()), name)
    elif name.endswith(".tsv"):
        reference = read_tsv(reference_file).drop(columns=TIMING_COLUMNS, errors="ignore")
        rerun = read_tsv(rerun_file).drop(columns=TIMING_COLUMNS, errors="ignore")
        assert list(reference.columns) == list(rerun.columns), name
        for column in reference.columns:
            numbers = pd.to_numeric(reference[column], errors="coerce")
            if numbers.notna().all():
                difference = np.abs(numbers.to_numpy() - pd.to_numeric(rerun[column]).to_numpy()).max(initial=0)
                assert difference <= 1e-6, f"{name}: {column} differs by {difference:.2e}"
            else:
                assert reference[column].tolist() == rerun[column].tolist(), f"{name}: {column}"
    else:
        assert reference_file.read_bytes() == rerun_file.read_bytes(), name


def test_a_killed_snakemake_rerun_with_the_same_command_gives_the_uninterrupted_outputs(tmp_path):
    overlay = tmp_path / "small.yaml"
    overlay.write_text(yaml.safe_dump(SMALL_DETERMINISTIC_DEMO))
    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"

    # The reference is the killed run's own model and predictions, uninterrupted: what comes after them is a
    # function of them (tests/evaluate), and tests/model/test_resume.py shows a resumed run bit-identical to an
    # uninterrupted one under TensorFlow and JAX.
    reference = subprocess.run(
        workflow_command(reference_dir, overlay, *KILLED_RUN_OUTPUTS),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    # The same targets: what runs after them would run as in any workflow (tests/test_workflow.py).
    command = workflow_command(killed_dir, overlay, *KILLED_RUN_OUTPUTS)
    with open(tmp_path / "killed.log", "w") as log:
        first = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log, start_new_session=True)
        training_log = killed_dir / KILLED_RUN_LOG
        deadline = time.monotonic() + 600
        # Between epochs: an epoch's log line is written once that epoch is backed up.
        while not (training_log.exists() and "epoch 2/3" in training_log.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert list((killed_dir / ".snakemake" / "locks").glob("*.lock")), "the kill left Snakemake's lock behind"
    assert not (killed_dir / "results/models/random/vgg19/seed0/model.keras").exists()

    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Removing the locks of Snakemake process" in rerun.stderr
    assert "resuming after epoch 2" in training_log.read_text()

    reference_results, rerun_results = reference_dir / "results", killed_dir / "results"
    outputs = compared_outputs(reference_results)
    assert outputs == compared_outputs(rerun_results)
    assert {"history.tsv", "test.tsv"} <= {path.name for path in outputs}
    for path in sorted(outputs):
        assert_same_output(reference_results / path, rerun_results / path, str(path))
    # The resumed run's provenance describes the same configuration, code and data.
    for record in reference_results.rglob("provenance.json"):
        reference_record = json.loads(record.read_text())
        rerun_record = json.loads((rerun_results / record.relative_to(reference_results)).read_text())
        for field in ("config_digest", "archive_sha256", "git"):
            assert rerun_record[field] == reference_record[field], (record, field)
