"""The subject-level view: how many subjects a held-out number rests on, and how the models score subjects.

C-NMC images cluster by subject (each an ALL patient or a healthy HEM donor, dozens to hundreds of cells each).
A subject is scored by its images' mean ``p_all``; its class is its images' label (majority, ties ALL, as the
subject bootstrap of :mod:`metrics` takes it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score

from leukemia_dtl.core.decisions import called_all
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import NEGATIVE_CLASS, POSITIVE_CLASS
from leukemia_dtl.evaluate.formatting import CAPTION, MARKDOWN_COLUMNS, mean_sd, mean_sd_text
from leukemia_dtl.evaluate.metrics import subject_is_all
from leukemia_dtl.evaluate.paper_values import model_name
from leukemia_dtl.evaluate.result_files import is_all, read_predictions

PER_SUBJECT_COLUMNS = ("subset", "model", "subject", "class", "images", "mean_p_all", "share_called_all")
SUBJECT_METRICS = {"roc_auc": "ROC-AUC", "accuracy": "accuracy"}

RunFiles = Mapping[tuple[str, int, str], str | os.PathLike]  # (model, seed, subset) -> prediction file
SetFiles = Mapping[tuple[str, str], str | os.PathLike]  # (model, subset) -> the ensemble's prediction file


def subject_scores(predictions: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per subject, in order of first appearance: subject, class (ALL/HEM), images, mean_p_all and
    share_called_all (of its images, ALL when p_all >= ``threshold``)."""
    frame = predictions.assign(is_all=is_all(predictions), called=called_all(predictions["p_all"], threshold))
    grouped = frame.groupby("subject", sort=False)
    scores = pd.DataFrame(
        {
            "images": grouped.size(),
            "mean_p_all": grouped["p_all"].mean(),
            "share_called_all": grouped["called"].mean(),
        }
    )
    scores.insert(0, "class", np.where(subject_is_all(grouped["is_all"].mean()), POSITIVE_CLASS, NEGATIVE_CLASS))
    return scores.rename_axis("subject").reset_index()


def subject_metrics(scores: pd.DataFrame, threshold: float) -> dict[str, float]:
    """ROC-AUC over subjects of their mean p_all (NaN without subjects of both classes) and the accuracy of
    calling a subject ALL when its mean p_all >= ``threshold``."""
    truth = (scores["class"] == POSITIVE_CLASS).to_numpy(dtype=int)
    both_classes = 0 < truth.sum() < len(truth)
    return {
        "roc_auc": float(roc_auc_score(truth, scores["mean_p_all"])) if both_classes else math.nan,
        "accuracy": float(accuracy_score(truth, called_all(scores["mean_p_all"], threshold))),
    }


def _ensemble_scores(ensemble_files: SetFiles, model: str, subset: str, threshold: float) -> pd.DataFrame:
    if (model, subset) not in ensemble_files:
        raise UserError(
            f"No ensemble predictions of {model} on {subset}; predict every seed and build the ensemble first."
        )
    return subject_scores(read_predictions(ensemble_files[model, subset]), threshold)


def _subsets(ensemble_files: SetFiles) -> list[str]:
    return list(dict.fromkeys(subset for _, subset in ensemble_files))


def _caveat(n_all: int, n_hem: int, min_subjects_per_class: int) -> str:
    if min(n_all, n_hem) >= min_subjects_per_class:
        return ""
    undefined = "; subject ROC-AUC undefined" if min(n_all, n_hem) == 0 else ""
    return f"fewer than {min_subjects_per_class} subjects of a class ({n_all} ALL, {n_hem} HEM){undefined}"


def _summary_row(
    model, subset, ensemble: pd.DataFrame, seed_metrics: list[dict], threshold, min_subjects_per_class
) -> tuple[dict, dict]:
    """The reading columns and the data columns of one model and subset."""
    n_all = int((ensemble["class"] == POSITIVE_CLASS).sum())
    n_hem = len(ensemble) - n_all
    shown = {
        "Model": model_name(model),
        "Subset": subset,
        "ALL subjects": n_all,
        "HEM subjects": n_hem,
        "Images": int(ensemble["images"].sum()),
    }
    data = {
        "model": model,
        "subset": subset,
        "n_all_subjects": n_all,
        "n_hem_subjects": n_hem,
        "n_images": shown["Images"],
    }
    ensemble_metrics = subject_metrics(ensemble, threshold)
    for metric, label in SUBJECT_METRICS.items():
        mean, sd, n_seeds = mean_sd([seed[metric] for seed in seed_metrics])
        shown[f"Subject {label}, seeds (mean ± sd)"] = mean_sd_text(mean, sd, 3)
        shown[f"Subject {label}, ensemble"] = mean_sd_text(ensemble_metrics[metric], math.nan, 3)
        data |= {
            f"{metric}_mean": mean,
            f"{metric}_sd": sd,
            f"{metric}_n_seeds": n_seeds,
            f"{metric}_ensemble": ensemble_metrics[metric],
        }
    shown["Caveat"] = _caveat(n_all, n_hem, min_subjects_per_class)
    return shown, data


def _subject_caption(table: pd.DataFrame, threshold: float, min_subjects_per_class: int) -> str:
    caption = (
        "A subject is scored by its images' mean p_all and takes its images' label (majority, ties ALL); "
        f"accuracy calls a subject ALL when that mean is >= {threshold:g}. Mean ± sd is over seeds; the ensemble "
        "averages the seeds' p_all per image."
    )
    # Every model sees the same subjects, so a subset is named once.
    few = list(dict.fromkeys(table.loc[table["Caveat"] != "", "Subset"]))
    if not few:
        return caption
    return (
        f"{caption} Caveat: fewer than {min_subjects_per_class} subjects of a class in {', '.join(few)}; the "
        "subject-level numbers there rest on very few subjects, and no subject-level bootstrap interval is given "
        "there (Table 1, model cards, subject comparison)."
    )


def subject_table(
    seed_files: RunFiles,
    ensemble_files: SetFiles,
    models: Sequence[str],
    threshold: float,
    min_subjects_per_class: int,
) -> pd.DataFrame:
    """Per model and held-out subset: the number of ALL and HEM subjects and of images, each seed's subject-level
    ROC-AUC and accuracy (mean ± sd over seeds) and the ensemble's, and a caveat where a class has fewer than
    ``min_subjects_per_class`` subjects, the workflow's limit for a subject-level interval (also in
    ``attrs["caption"]``)."""
    rows = []
    for model in models:
        for subset in _subsets(ensemble_files):
            ensemble = _ensemble_scores(ensemble_files, model, subset, threshold)
            runs = sorted(
                (seed, path)
                for (run_model, seed, run_subset), path in seed_files.items()
                if (run_model, run_subset) == (model, subset)
            )
            if not runs:
                raise UserError(f"No seed predictions of {model} on {subset}; predict them or leave {subset} out.")
            seed_metrics = [
                subject_metrics(subject_scores(read_predictions(path), threshold), threshold) for _, path in runs
            ]
            rows.append(_summary_row(model, subset, ensemble, seed_metrics, threshold, min_subjects_per_class))
    table = pd.DataFrame([shown | data for shown, data in rows])
    table.attrs[MARKDOWN_COLUMNS] = list(rows[0][0])
    table.attrs[CAPTION] = _subject_caption(table, threshold, min_subjects_per_class)
    return table


def per_subject_table(ensemble_files: SetFiles, models: Sequence[str], threshold: float) -> pd.DataFrame:
    """One row per subset, model and subject: its class, images, and the ensemble's mean p_all and share of its
    images called ALL at ``threshold``."""
    frames = [
        _ensemble_scores(ensemble_files, model, subset, threshold).assign(subset=subset, model=model)
        for subset in _subsets(ensemble_files)
        for model in models
    ]
    return pd.concat(frames, ignore_index=True)[list(PER_SUBJECT_COLUMNS)]
