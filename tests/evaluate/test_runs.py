import json
import re
from pathlib import Path

import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.format_versions import TRAIN_STATS_FORMAT_VERSION
from leukemia_dtl.core.provenance import write_run_provenance
from leukemia_dtl.evaluate.result_files import write_metrics
from leukemia_dtl.evaluate.runs import option_text, write_runs_tables

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ARCHIVE_HEX = "68c7afaf3ab2a8d8b4c263520fd1c28b2288c73d36741217b6fd70d8f35d0f42"
# Three runs, each with its own options and scores, so that a value taken from the wrong file shows.
RUNS = [("random", "vgg19", 0), ("random", "vgg19", 1), ("patient", "efficientnetb3", 0)]
OPTIONS = {
    RUNS[0]: {"weights": "none", "optimizer": "adamax", "learning_rate": 0.3, "batch_size": 16, "epochs": 5},
    RUNS[1]: {"weights": "none", "optimizer": "adamax", "learning_rate": 0.3, "batch_size": 16, "epochs": 5},
    RUNS[2]: {
        "weights": "imagenet",
        "optimizer": "adam",
        "learning_rate": 1e-5,
        "batch_size": 32,
        "epochs": 100,
        "dropout": 0.5,
        "fine_tune": {"layers": 20, "learning_rate": 1e-5, "epochs": 20},
        "class_weight": "balanced",
    },
}
# (run index, subset) -> (roc_auc, balanced_accuracy)
SCORES = {
    (0, "test"): (0.71, 0.61),
    (0, "external"): (0.51, 0.41),
    (1, "test"): (0.72, 0.62),
    (1, "external"): (0.52, 0.42),
    (2, "test"): (0.93, 0.83),
    (2, "external"): (0.63, 0.53),
}


def _write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _metrics(roc_auc: float, balanced_accuracy: float) -> dict:
    def entry(value):
        return {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.1, "subject_ci_low": None}

    return {"roc_auc": entry(roc_auc), "balanced_accuracy": entry(balanced_accuracy), "accuracy": entry(0.5)}


def _provenance(index: int) -> dict:
    return {
        "git": {"commit": COMMIT, "modified": index == 1, "error": None},
        "config_digest": f"sha256:{index}" + "f" * 63,
        "archive_sha256": None if index == 2 else ARCHIVE_HEX,
        "packages": {"keras": "3.15.1", "numpy": "2.4.6"}
        | ({"tensorflow": "2.21.0", "jax": "0.10.2"} if index == 2 else {"tensorflow_cpu": "2.20.0"}),
        "device": "NVIDIA H100" if index == 2 else "CPU: test",
        "keras_backend": "jax" if index == 2 else "tensorflow",
        "python": "3.11.7",
        "slurm": {"SLURM_JOB_ID": "777" if index == 2 else None},
    }


@pytest.fixture
def run_files(tmp_path):
    """Each run's train_stats.json, provenance.json and test/external metrics, laid out as in results/."""
    files = {"train_stats": [], "provenance": [], "metrics": {"test": [], "external": []}}
    for index, run in enumerate(RUNS):
        folder = tmp_path / "{}/{}/seed{}".format(*run)
        stats = {
            "format_version": TRAIN_STATS_FORMAT_VERSION,
            "model_options": OPTIONS[run],
            "image_size": 224 if index == 2 else 32,
            "epochs_run": 70 if index == 2 else 5,
            "resumed_from_epoch": 50 if index == 2 else 0,
            "training_seconds": 100.0 + index,
            "device": _provenance(index)["device"],
            "keras_backend": _provenance(index)["keras_backend"],
        }
        files["train_stats"].append(_write_json(folder / "train_stats.json", stats))
        files["provenance"].append(_write_json(folder / "provenance.json", _provenance(index)))
        for subset in ("test", "external"):
            write_metrics(_metrics(*SCORES[index, subset]), folder / f"{subset}.json")
            files["metrics"][subset].append(folder / f"{subset}.json")
    return files


def _write(tmp_path, run_files, runs=RUNS) -> dict[str, Path]:
    out = {name: tmp_path / "tables" / name for name in ("runs.tsv", "runs.md", "provenance.tsv", "provenance.md")}
    write_runs_tables(
        runs=[list(run) for run in runs],
        train_stats_paths=run_files["train_stats"],
        provenance_paths=run_files["provenance"],
        metrics_paths=run_files["metrics"],
        runs_paths=(out["runs.tsv"], out["runs.md"]),
        provenance_table_paths=(out["provenance.tsv"], out["provenance.md"]),
    )
    return out


def test_one_row_per_run_with_scores_from_its_own_files(tmp_path, run_files):
    table = read_tsv(_write(tmp_path, run_files)["runs.tsv"])
    assert len(table) == len(RUNS)
    assert list(zip(table["scheme"], table["model"], table["seed"].astype(int), strict=True)) == RUNS
    for index in range(len(RUNS)):
        for subset in ("test", "external"):
            roc_auc, balanced_accuracy = SCORES[index, subset]
            assert float(table.at[index, f"{subset}_roc_auc"]) == roc_auc
            assert float(table.at[index, f"{subset}_balanced_accuracy"]) == balanced_accuracy


def test_configuration_columns_as_the_run_trained(tmp_path, run_files):
    table = read_tsv(_write(tmp_path, run_files)["runs.tsv"]).set_index("seed")
    tuned = table[table["scheme"] == "patient"].iloc[0]
    assert tuned[["weights", "image_size", "optimizer", "learning_rate", "batch_size", "epochs"]].tolist() == [
        "imagenet",
        "224",
        "adam",
        "1e-05",
        "32",
        "100",
    ]
    assert tuned["fine_tune"] == "top 20 weighted layers, lr 1e-05, 20 epochs"
    assert tuned["class_weight"] == "balanced"
    assert (tuned["epochs_run"], tuned["resumed_from_epoch"], float(tuned["training_seconds"])) == ("70", "50", 102.0)
    first = table[table["scheme"] == "random"].iloc[0]
    assert (first["fine_tune"], first["class_weight"], first["dropout"]) == ("off", "none", "")


def test_commit_and_digest_in_short_form(tmp_path, run_files):
    table = read_tsv(_write(tmp_path, run_files)["runs.tsv"])
    assert table["git_commit"].tolist() == ["0123456", "0123456 (modified)", "0123456"]
    assert table["config_digest"].tolist() == ["0fffffffffff", "1fffffffffff", "2fffffffffff"]


def test_markdown_shows_small_learning_rates_and_the_caption(tmp_path, run_files):
    markdown = _write(tmp_path, run_files)["runs.md"].read_text()
    assert markdown.startswith("## Trained runs\n\nOne row per trained run")
    patient_row = next(line for line in markdown.splitlines() if line.startswith("| patient"))
    assert "| 1e-05 |" in patient_row and "| 0.930 |" in patient_row


def test_provenance_table(tmp_path, run_files):
    out = _write(tmp_path, run_files)
    table = read_tsv(out["provenance.tsv"]).set_index("run")
    assert table.index.tolist() == ["random/vgg19/seed0", "random/vgg19/seed1", "patient/efficientnetb3/seed0"]
    cpu, gpu = table.loc["random/vgg19/seed1"], table.loc["patient/efficientnetb3/seed0"]
    # The CPU build of TensorFlow on the first runs, the CUDA build (distribution "tensorflow") on the GPU run.
    assert (cpu["tensorflow"], gpu["tensorflow"]) == ("2.20.0", "2.21.0")
    assert (cpu["jax"], gpu["jax"]) == ("not installed", "0.10.2")
    assert (cpu["git_commit"], cpu["git_modified"], gpu["git_modified"]) == ("0123456", "yes", "no")
    assert (cpu["archive_sha256"], gpu["archive_sha256"]) == (ARCHIVE_HEX[:12], "n/a")
    assert (cpu["slurm_job_id"], gpu["slurm_job_id"]) == ("none", "777")
    assert (gpu["device"], gpu["keras_backend"], gpu["keras"], gpu["numpy"]) == (
        "NVIDIA H100",
        "jax",
        "3.15.1",
        "2.4.6",
    )
    assert out["provenance.md"].read_text().startswith("## Provenance of each trained run\n\nFrom each run's")


def test_a_record_written_by_this_environment_gives_its_versions(tmp_path, run_files):
    write_run_provenance(
        run_files["provenance"][0],
        rule_params={"seed": 0},
        archive_checksum_file=None,
        device="CPU: test",
        keras_backend="tensorflow",
        slurm={"SLURM_JOB_ID": None},
        repository=tmp_path,
    )
    first = read_tsv(_write(tmp_path, run_files)["provenance.tsv"]).iloc[0]
    assert first["numpy"] == np.__version__
    assert (first["git_commit"], first["git_modified"]) == ("unknown", "unknown")


def test_a_metrics_file_without_a_score_is_a_user_error_naming_it(tmp_path, run_files):
    broken = run_files["metrics"]["external"][1]
    write_metrics({"roc_auc": {"value": 0.5}}, broken)
    with pytest.raises(UserError, match=rf"{re.escape(str(broken))}.*balanced_accuracy"):
        _write(tmp_path, run_files)


def test_train_stats_of_an_older_version_are_a_user_error_naming_the_file_and_the_rule(tmp_path, run_files):
    broken = run_files["train_stats"][2]
    broken.write_text(json.dumps({"image_size": 32}))
    with pytest.raises(UserError, match=rf"{re.escape(str(broken))} was written by an older .* --forcerun train_model"):
        _write(tmp_path, run_files)


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("learning_rate", 0.0001, "0.0001"),
        ("learning_rate", 1e-05, "1e-05"),
        ("batch_size", 30, "30"),
        ("fine_tune", None, "off"),
        ("class_weight", None, "none"),
        ("freeze_base", True, "true"),
    ],
)
def test_option_text(name, value, text):
    assert option_text(name, value) == text
