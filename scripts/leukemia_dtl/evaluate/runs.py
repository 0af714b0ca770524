"""The run overview: one row per trained run (split scheme, model, seed) with the options it trained with, its
training time and its held-out scores, and one row per run with its provenance (code, config, data, software,
device, Slurm job), so that runs compare at a glance and every number traces back to what produced it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from leukemia_dtl.core.provenance import (
    SHORT_COMMIT_LENGTH,
    package_version,
    read_run_provenance,
    short_commit,
    short_digest,
)
from leukemia_dtl.core.train_stats import read_train_stats
from leukemia_dtl.core.vocabulary import REPORTED_SUBSETS
from leukemia_dtl.evaluate.formatting import CAPTION, write_table
from leukemia_dtl.evaluate.result_files import metric_entry, read_metrics

Run = tuple[str, str, int]  # (scheme, model, seed)

# The scores of each run in the overview, per held-out subset.
RUN_METRICS = ("roc_auc", "balanced_accuracy")
# The options of a models block the overview shows after weights and image size, as the run trained with them
# (tuned values included).
RUN_OPTIONS = ("optimizer", "learning_rate", "batch_size", "epochs", "dropout", "fine_tune", "class_weight")
# What a models block without the option means (vocabulary: both are off unless set).
OPTION_DEFAULTS = {"fine_tune": "off", "class_weight": "none"}
# Distributions that provide TensorFlow: the CUDA build (tensorflow, also with [and-cuda]) or the CPU one.
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu")
NOT_INSTALLED = "not installed"


def option_text(name: str, value) -> str:
    """A models-block option as a table shows it: numbers in their shortest form, fine_tune in one phrase, and
    an absent option as what it means."""
    if value is None:
        return OPTION_DEFAULTS.get(name, "")
    if name == "fine_tune":
        return f"top {value['layers']} weighted layers, lr {value['learning_rate']:g}, {value['epochs']} epochs"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def read_run_metrics(path: str | os.PathLike, metrics: Sequence[str]) -> dict:
    """A metrics JSON (``result_files.read_metrics``), checked to hold a value for each of ``metrics`` (UserError
    naming the file otherwise)."""
    results = read_metrics(path)
    for metric in metrics:
        metric_entry(results, metric, path)
    return results


def run_name(run: Run) -> str:
    scheme, model, seed = run
    return f"{scheme}/{model}/seed{seed}"


def runs_table(
    runs: Sequence[Run],
    train_stats: Sequence[Mapping],
    provenance: Sequence[Mapping],
    metrics: Mapping[str, Sequence[Mapping]],
) -> pd.DataFrame:
    """One row per run, in ``runs`` order: scheme, model, seed, the options it trained with, image_size,
    epochs_run (by the job that finished it; resumed_from_epoch were run before), training_seconds, each
    held-out subset's RUN_METRICS (``metrics``: subset -> one metrics JSON per run), and the short git
    commit and config digest of its provenance. The lists are parallel to ``runs``."""
    # Per run, its metrics JSON of each subset.
    run_metrics = [dict(zip(metrics, files, strict=True)) for files in zip(*metrics.values(), strict=True)]
    rows = []
    for (scheme, model, seed), stats, record, held_out in zip(
        runs, train_stats, provenance, run_metrics or [{}] * len(runs), strict=True
    ):
        options = stats["model_options"]
        row = {
            "scheme": scheme,
            "model": model,
            "seed": int(seed),
            "weights": option_text("weights", options.get("weights")),
        }
        row["image_size"] = stats["image_size"]
        row |= {name: option_text(name, options.get(name)) for name in RUN_OPTIONS}
        row |= {
            "epochs_run": stats["epochs_run"],
            "resumed_from_epoch": stats.get("resumed_from_epoch", 0),
            "training_seconds": float(stats["training_seconds"]),
        }
        for subset, results in held_out.items():
            row |= {f"{subset}_{metric}": float(results[metric]["value"]) for metric in RUN_METRICS}
        row |= {"git_commit": short_commit(record["git"]), "config_digest": short_digest(record["config_digest"])}
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs[CAPTION] = (
        "One row per trained run: the options it trained with (with hyperparameters: tuned, the grid search's pick), "
        "the epochs the job that finished it ran (resumed_from_epoch: those an interrupted job ran before), the "
        "training time (sum of the epochs' times, validation included), the single run's ROC-AUC and balanced "
        "accuracy on test and external, and the git commit and config digest of its provenance.json."
    )
    return table


def provenance_table(runs: Sequence[Run], provenance: Sequence[Mapping]) -> pd.DataFrame:
    """One row per run, in ``runs`` order: the short git commit and whether the tree was modified, the short
    config digest and archive sha256, the device, Keras backend, Python and the versions of Keras, TensorFlow,
    NumPy and JAX of the training job, and its Slurm job id."""
    rows = []
    for run, record in zip(runs, provenance, strict=True):
        git, packages = record["git"], record["packages"]
        versions = {
            "keras": package_version(packages, "keras"),
            "tensorflow": package_version(packages, *TENSORFLOW_DISTRIBUTIONS),
            "numpy": package_version(packages, "numpy"),
            "jax": package_version(packages, "jax"),
        }
        rows.append(
            {
                "run": run_name(run),
                "git_commit": git["commit"][:SHORT_COMMIT_LENGTH] if git.get("commit") else "unknown",
                "git_modified": {True: "yes", False: "no"}.get(git.get("modified"), "unknown"),
                "config_digest": short_digest(record["config_digest"]),
                "archive_sha256": short_digest(record["archive_sha256"]),
                "device": record["device"],
                "keras_backend": record["keras_backend"],
                "python": record.get("python", ""),
                **{name: version or NOT_INSTALLED for name, version in versions.items()},
                "slurm_job_id": (record["slurm"] or {}).get("SLURM_JOB_ID") or "none",
            }
        )
    table = pd.DataFrame(rows)
    table.attrs[CAPTION] = (
        "From each run's provenance.json (results/models/{scheme}/{model}/seed{seed}/), which also holds the version "
        "of every installed package and the full config the training rule received. git_modified: uncommitted "
        "changes to tracked files or untracked files; unknown where git could not answer (the reason is in the "
        "file). config_digest: sha256 of that config; archive_sha256: n/a where the data came from a folder."
    )
    return table


def write_runs_tables(
    runs: Sequence[Run],
    train_stats_paths: Sequence[str | os.PathLike],
    provenance_paths: Sequence[str | os.PathLike],
    metrics_paths: Mapping[str, Sequence[str | os.PathLike]],
    runs_paths: tuple[str | os.PathLike, str | os.PathLike],
    provenance_table_paths: tuple[str | os.PathLike, str | os.PathLike],
) -> None:
    """Read every run's files (``metrics_paths``: subset -> one metrics JSON per run; the lists parallel to
    ``runs``) and write the run overview and the provenance table, each as (TSV, Markdown)."""
    runs = [(scheme, model, int(seed)) for scheme, model, seed in runs]
    train_stats = [read_train_stats(path) for path in train_stats_paths]
    provenance = [read_run_provenance(path) for path in provenance_paths]
    metrics = {
        subset: [read_run_metrics(path, RUN_METRICS) for path in metrics_paths[subset]]
        for subset in REPORTED_SUBSETS
        if subset in metrics_paths
    }
    write_table(runs_table(runs, train_stats, provenance, metrics), *runs_paths, "Trained runs")
    write_table(provenance_table(runs, provenance), *provenance_table_paths, "Provenance of each trained run")
