"""Model cards: one Markdown page per split scheme and model, for someone deciding whether and how to reuse the
trained models. It says what they are for, what they were trained on and how (tuned values included), how well
they do on the held-out subsets with intervals and calibration, what limits those numbers, and where each seed's
files and provenance are."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from leukemia_dtl.core.fileio import atomic_path, storage_errors
from leukemia_dtl.core.provenance import read_run_provenance, short_commit, short_digest
from leukemia_dtl.core.train_stats import read_train_stats
from leukemia_dtl.core.vocabulary import (
    AUGMENTATION_OPTIONS,
    MODEL_OPTION_GROUPS,
    NEGATIVE_CLASS,
    PATIENT_SPLIT,
    POSITIVE_CLASS,
    RANDOM_SPLIT,
    REPORTED_SUBSETS,
    SUBSETS,
)
from leukemia_dtl.data.splits import leakage_report, read_split
from leukemia_dtl.evaluate.calibration import CALIBRATION_BINS, brier_score, expected_calibration_error
from leukemia_dtl.evaluate.formatting import markdown_table, mean_sd, mean_sd_text
from leukemia_dtl.evaluate.paper_values import model_name
from leukemia_dtl.evaluate.result_files import is_all, read_predictions
from leukemia_dtl.evaluate.runs import option_text, read_run_metrics

# The metrics a card reports, in its order, with the names it gives them.
CARD_METRICS = {
    "roc_auc": "ROC-AUC",
    "balanced_accuracy": "Balanced accuracy",
    "accuracy": "Accuracy",
    "weighted_f1": "Weighted F1",
    "recall_all": "Sensitivity (ALL recall)",
    "specificity": "Specificity (HEM recall)",
}
DIGITS = 3
SCHEME_DESCRIPTIONS = {
    RANDOM_SPLIT: (
        "random: images assigned to train, val and test at random, as the paper did (an image-level split: one "
        "subject's cells can sit in all three)"
    ),
    PATIENT_SPLIT: "patient: subjects assigned to train, val and test, so no subject is in two of them",
}
# The per-seed option columns of the training table: the head's and the training loop's options.
TRAINING_OPTIONS = (
    *MODEL_OPTION_GROUPS["training"],
    *MODEL_OPTION_GROUPS["head"],
    *MODEL_OPTION_GROUPS["training_extras"],
)


def _heading(model: str, scheme: str, seeds: Sequence[int], weights: str) -> list[str]:
    lines = [
        f"# Model card: {model_name(model)}, {scheme} split",
        "",
        f"`{model}` trained on the {scheme} split with seeds {', '.join(map(str, seeds))}: a model per seed, and "
        "their seed ensemble (per image the mean of the seeds' probability of ALL, `p_all`).",
        "",
    ]
    if weights == "none":
        lines += [
            "> **Warning: random base.** These models were trained with `weights: none`: their base starts from "
            "random weights, not ImageNet's, and stays frozen, so only the head learned. This is the demo's "
            "setting, for exercising the workflow; its numbers say nothing about the paper's models.",
            "",
        ]
    return lines


def _intended_use() -> list[str]:
    return [
        "## Intended use",
        "",
        "Research on the C-NMC 2019 single-cell images (acute lymphoblastic leukemia blasts, ALL, against normal "
        "cells, HEM): reproducing and extending Soladoye et al. (2025) and comparing models and split schemes. "
        "**Not for diagnosis**: the models are not validated clinically, and must not inform decisions about "
        "patients.",
        "",
    ]


def split_counts(split: pd.DataFrame) -> pd.DataFrame:
    """Per subset of ``split`` (in the vocabulary's order): images and subjects of each class."""
    rows = []
    for subset in (subset for subset in SUBSETS if subset in set(split["subset"])):
        part = split[split["subset"] == subset]
        row = {"Subset": subset}
        for label in (POSITIVE_CLASS, NEGATIVE_CLASS):
            of_class = part[part["label"] == label]
            row |= {f"{label} images": len(of_class), f"{label} subjects": of_class["subject"].nunique()}
        rows.append(row)
    return pd.DataFrame(rows)


def _data_section(scheme: str, split: pd.DataFrame) -> str:
    caption = (
        f"Split scheme {SCHEME_DESCRIPTIONS.get(scheme, scheme)}. external holds the C-NMC 2019 prelim-phase "
        "images, whose subjects are never in training. Images and subjects per class:"
    )
    return markdown_table(split_counts(split), "Data and split", caption)


def _configuration_caption(
    model: str, model_options: Mapping, augmentation: Mapping, image_size: int, precision: str, train_stats
) -> str:
    augmented = ", ".join(
        f"{name} {option_text(name, augmentation[name])}" for name in AUGMENTATION_OPTIONS if name in augmentation
    )
    policies = ", ".join(dict.fromkeys(str(stats.get("precision", precision)) for stats in train_stats))
    base_options = ", ".join(
        f"{name}: {option_text(name, model_options[name])}"
        for name in MODEL_OPTION_GROUPS["base"]
        if name in model_options
    )
    return (
        f"Base: {model_name(model)} ({base_options}). Images {image_size} × {image_size} px. Augmentation, in "
        f"training only: {augmented or 'none'}. Precision: {precision} (dtype policy used: {policies})."
    )


def tuned_differences(configured: Mapping, train_stats: Sequence[Mapping]) -> dict[str, tuple[str, str]]:
    """{option: (the values the seeds trained with, the configured value)} for each option of the training
    table where a seed trained with another value than the config's models block gives."""
    differences = {}
    for name in TRAINING_OPTIONS:
        trained = dict.fromkeys(option_text(name, stats["model_options"].get(name)) for stats in train_stats)
        configured_text = option_text(name, configured.get(name))
        if set(trained) != {configured_text}:
            differences[name] = (", ".join(trained), configured_text)
    return differences


def _hyperparameters_text(hyperparameters: str, configured: Mapping, train_stats: Sequence[Mapping]) -> str:
    if hyperparameters != "tuned":
        return "Hyperparameters: configured (the config's models block)."
    differences = tuned_differences(configured, train_stats)
    changed = "; ".join(f"{name} {trained} (config: {config})" for name, (trained, config) in differences.items())
    return (
        "Hyperparameters: tuned (the grid search's pick on the validation subset, over the config's models block): "
        f"{changed or 'the pick equals the config'}."
    )


def _duration_text(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def training_table(seeds: Sequence[int], train_stats: Sequence[Mapping]) -> pd.DataFrame:
    """Per seed, the training options it trained with (those no seed has are left out; fine_tune and class_weight
    always shown), the epochs run, the training time and the device."""
    shown = [
        name
        for name in TRAINING_OPTIONS
        if name in MODEL_OPTION_GROUPS["training_extras"] or any(name in s["model_options"] for s in train_stats)
    ]
    rows = []
    for seed, stats in zip(seeds, train_stats, strict=True):
        row = {"Seed": seed} | {name: option_text(name, stats["model_options"].get(name)) for name in shown}
        row |= {
            "Epochs run": stats["epochs_run"],
            "Training time": _duration_text(stats["training_seconds"]),
            "Device": stats["device"],
            "Keras backend": stats["keras_backend"],
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _configuration_section(
    model, seeds, train_stats, model_options, hyperparameters, augmentation, image_size, precision
) -> str:
    caption = " ".join(
        [
            _configuration_caption(model, model_options, augmentation, image_size, precision, train_stats),
            _hyperparameters_text(hyperparameters, model_options, train_stats),
            "Per seed, the values it trained with; epochs run counts those of the job that finished the run.",
        ]
    )
    return markdown_table(training_table(seeds, train_stats), "Training configuration", caption)


def _ci_text(entry: Mapping, low: str, high: str) -> str:
    if entry.get(low) is None or entry.get(high) is None:
        return "n/a"
    return f"[{entry[low]:.{DIGITS}f}, {entry[high]:.{DIGITS}f}]"


def _confidence_text(ensemble_metrics: Mapping[str, Mapping]) -> str:
    return ", ".join(dict.fromkeys(f"{100 * run['confidence']:g}%" for run in ensemble_metrics.values()))


def metrics_table(
    seed_metrics: Mapping[str, Sequence[Mapping]], ensemble_metrics: Mapping[str, Mapping]
) -> pd.DataFrame:
    """Per held-out subset and CARD_METRICS metric: the single seeds' mean ± sd and their number, and the seed
    ensemble's value with its image-level and subject-level bootstrap intervals ("n/a" where the metrics file
    has none)."""
    confidence = _confidence_text(ensemble_metrics)
    rows = []
    for subset, ensemble in ensemble_metrics.items():
        for metric, label in CARD_METRICS.items():
            mean, sd, n_seeds = mean_sd([run[metric]["value"] for run in seed_metrics[subset]])
            entry = ensemble[metric]
            rows.append(
                {
                    "Subset": subset,
                    "Metric": label,
                    "Single seeds, mean ± sd": mean_sd_text(mean, sd, DIGITS),
                    "Seeds": n_seeds,
                    "Seed ensemble": f"{entry['value']:.{DIGITS}f}",
                    f"Image-level {confidence} CI": _ci_text(entry, "ci_low", "ci_high"),
                    f"Subject-level {confidence} CI": _ci_text(entry, "subject_ci_low", "subject_ci_high"),
                }
            )
    return pd.DataFrame(rows)


def _metrics_section(scheme: str, seed_metrics, ensemble_metrics, min_subjects_per_class: int) -> str:
    thresholds = ", ".join(dict.fromkeys(f"{run['threshold']:g}" for run in ensemble_metrics.values()))
    caption = (
        f"An image is called ALL when p_all >= {thresholds}. Mean ± sd over the single seeds (training variance); "
        "the seed ensemble's percentile bootstrap intervals resample images (image-level) or whole "
        f"subjects within their class (subject-level: n/a where a class has fewer than {min_subjects_per_class} "
        "subjects, too few for a percentile bootstrap to cover)."
    )
    if scheme == RANDOM_SPLIT:
        caption += " The test images share subjects with training (see Known limitations); external ones never do."
    return markdown_table(metrics_table(seed_metrics, ensemble_metrics), "Metrics on held-out data", caption)


def calibration_table(
    seed_predictions: Mapping[str, Sequence[pd.DataFrame]], ensemble_predictions: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """Per held-out subset: the expected calibration error and the Brier score of p_all (calibration.py's), the
    single seeds' mean ± sd and the seed ensemble's."""
    measures = {
        f"ECE ({CALIBRATION_BINS} bins)": lambda frame: expected_calibration_error(
            is_all(frame), frame["p_all"], CALIBRATION_BINS
        ),
        "Brier score": lambda frame: brier_score(is_all(frame), frame["p_all"]),
    }
    rows = []
    for subset, ensemble in ensemble_predictions.items():
        for label, measure in measures.items():
            mean, sd, n_seeds = mean_sd([measure(frame) for frame in seed_predictions[subset]])
            rows.append(
                {
                    "Subset": subset,
                    "Measure": label,
                    "Single seeds, mean ± sd": mean_sd_text(mean, sd, DIGITS),
                    "Seeds": n_seeds,
                    "Seed ensemble": f"{measure(ensemble):.{DIGITS}f}",
                }
            )
    return pd.DataFrame(rows)


def _calibration_section(seed_predictions, ensemble_predictions) -> str:
    caption = (
        "How far p_all is from the observed frequency of ALL (lower is better, 0 is perfect): the expected "
        f"calibration error over {CALIBRATION_BINS} equal-width bins of p_all, and the Brier score (mean squared "
        "difference between p_all and the truth)."
    )
    return markdown_table(calibration_table(seed_predictions, ensemble_predictions), "Calibration", caption)


def _leakage_text(scheme: str, split: pd.DataFrame) -> str:
    """How many test subjects and images share a subject with train, from the split."""
    report = leakage_report(split).set_index("subset")
    test = {column: int(report.at["test", column]) for column in report.columns if column != "leaked_fraction"}
    shared = (
        f"{test['subjects_in_train']} of the {test['subjects']} test subjects ({test['images_with_subject_in_train']} "
        f"of the {test['images']} test images) also have images in train"
    )
    if scheme == RANDOM_SPLIT:
        return (
            f"**Image-level leakage (random split)**: {shared}, as in the paper's split. The test scores therefore "
            "measure recognising cells of subjects the model has seen, and overstate how it does on new patients; "
            "external (subjects never in training) and the patient split measure that."
        )
    return f"Subject-disjoint split: {shared}."


def few_subjects(split: pd.DataFrame, min_subjects_per_class: int) -> dict[str, dict[str, int]]:
    """{held-out subset: {class: subjects}} of the classes with fewer than ``min_subjects_per_class`` subjects
    there."""
    flags = {}
    for subset in REPORTED_SUBSETS:
        part = split[split["subset"] == subset]
        counts = {
            label: part.loc[part["label"] == label, "subject"].nunique() for label in (POSITIVE_CLASS, NEGATIVE_CLASS)
        }
        few = {label: count for label, count in counts.items() if count < min_subjects_per_class}
        if few and not part.empty:
            flags[subset] = few
    return flags


def _limitations_section(scheme: str, split: pd.DataFrame, weights: str, min_subjects_per_class: int) -> list[str]:
    flags = ", ".join(
        f"{subset} ({', '.join(f'{count} {label}' for label, count in few.items())})"
        for subset, few in few_subjects(split, min_subjects_per_class).items()
    )
    subjects = (
        f"Fewer than {min_subjects_per_class} subjects of a class in {flags}: no subject-level interval there, as "
        "a percentile bootstrap over so few subjects under-covers; the numbers there rest on very few subjects."
        if flags
        else f"Every class has at least {min_subjects_per_class} subjects in test and external."
    )
    items = [
        _leakage_text(scheme, split),
        "**Single public dataset**: C-NMC 2019 only, from one centre, with stain-normalised images; how the models "
        "do on other laboratories' staining, microscopes or segmentation is unknown.",
        "**Few subjects**: cells cluster by subject, so the subject, not the image, limits what a number can say. "
        + subjects,
    ]
    if weights == "none":
        items.append(
            "**Random base** (`weights: none`): the base was never trained on images, so these models are not the "
            "paper's transfer-learning models; use them only to test the workflow."
        )
    return ["## Known limitations", "", *(f"- {item}" for item in items), ""]


def files_table(
    seeds: Sequence[int], model_files: Sequence[str], export_folders: Sequence[str], provenance: Sequence[Mapping]
) -> pd.DataFrame:
    """Per seed: its .keras file, its export folder, and from its provenance the git commit (short, marked when
    the tree was modified), the config digest and the archive's sha256 (short)."""
    rows = [
        {
            "Seed": seed,
            "Model file": f"`{model_file}`",
            "Export folder": f"`{export_folder}`",
            "Git commit": short_commit(record["git"]),
            "Config digest": short_digest(record["config_digest"]),
            "Archive sha256": short_digest(record["archive_sha256"]),
        }
        for seed, model_file, export_folder, record in zip(seeds, model_files, export_folders, provenance, strict=True)
    ]
    return pd.DataFrame(rows)


def _files_section(seeds, model_files, export_folders, provenance) -> str:
    caption = (
        "The Keras model of each seed; its TensorFlow SavedModel and ONNX file appear in the export folder after "
        "`snakemake export`. Each model's provenance.json, beside it, holds the full git commit, the config its "
        "training received, the archive's sha256 and the version of every installed package."
    )
    return markdown_table(files_table(seeds, model_files, export_folders, provenance), "Files", caption)


def model_card(
    *,
    scheme: str,
    model: str,
    seeds: Sequence[int],
    split: pd.DataFrame,
    train_stats: Sequence[Mapping],
    provenance: Sequence[Mapping],
    seed_metrics: Mapping[str, Sequence[Mapping]],
    seed_predictions: Mapping[str, Sequence[pd.DataFrame]],
    ensemble_metrics: Mapping[str, Mapping],
    ensemble_predictions: Mapping[str, pd.DataFrame],
    model_files: Sequence[str],
    export_folders: Sequence[str],
    model_options: Mapping,
    hyperparameters: str,
    augmentation: Mapping,
    image_size: int,
    precision: str,
    min_subjects_per_class: int,
) -> str:
    """The Markdown model card of ``model`` on ``scheme``. Per-seed sequences are in ``seeds`` order; the
    ``seed_*`` mappings go from held-out subset to one entry per seed, the ``ensemble_*`` ones to the seed
    ensemble's; ``model_options`` is the config's models block and the other settings the config's
    (``min_subjects_per_class``: statistics.min_subjects_per_class, below which a subset's subject-level
    numbers are flagged)."""
    weights = str(model_options.get("weights"))
    parts = [
        *_heading(model, scheme, seeds, weights),
        *_intended_use(),
        _data_section(scheme, split),
        _configuration_section(
            model, seeds, train_stats, model_options, hyperparameters, augmentation, image_size, precision
        ),
        _metrics_section(scheme, seed_metrics, ensemble_metrics, min_subjects_per_class),
        _calibration_section(seed_predictions, ensemble_predictions),
        *_limitations_section(scheme, split, weights, min_subjects_per_class),
        _files_section(seeds, model_files, export_folders, provenance),
    ]
    return "\n".join(parts).rstrip("\n") + "\n"


def write_model_card(
    card_path: str | os.PathLike,
    *,
    split_path: str | os.PathLike,
    train_stats_paths: Sequence[str | os.PathLike],
    provenance_paths: Sequence[str | os.PathLike],
    metrics_paths: Mapping[str, Sequence[str | os.PathLike]],
    prediction_paths: Mapping[str, Sequence[str | os.PathLike]],
    ensemble_metrics_paths: Mapping[str, str | os.PathLike],
    ensemble_prediction_paths: Mapping[str, str | os.PathLike],
    **settings,
) -> None:
    """Read the files :func:`model_card` needs (per held-out subset for the metrics and predictions, each
    sequence in seed order) and write the card to ``card_path`` atomically; ``settings`` are model_card's
    scheme, model, seeds, model_files, export_folders, model_options, hyperparameters, augmentation,
    image_size, precision and min_subjects_per_class."""
    card = model_card(
        split=read_split(split_path),
        train_stats=[read_train_stats(path) for path in train_stats_paths],
        provenance=[read_run_provenance(path) for path in provenance_paths],
        seed_metrics={
            subset: [read_run_metrics(path, CARD_METRICS) for path in paths] for subset, paths in metrics_paths.items()
        },
        seed_predictions={
            subset: [read_predictions(path) for path in paths] for subset, paths in prediction_paths.items()
        },
        ensemble_metrics={
            subset: read_run_metrics(path, CARD_METRICS) for subset, path in ensemble_metrics_paths.items()
        },
        ensemble_predictions={subset: read_predictions(path) for subset, path in ensemble_prediction_paths.items()},
        **settings,
    )
    with atomic_path(card_path) as tmp, storage_errors(card_path):
        tmp.write_text(card)
