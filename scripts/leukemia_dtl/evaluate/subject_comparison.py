"""The models compared with the subject as the independent unit.

The paper's paired t-tests (:mod:`model_comparison`) pair seeds on one fixed test set: they measure training
noise. C-NMC images cluster by subject (an ALL patient or a healthy donor, dozens to hundreds of cells each), so a
difference that should hold for new subjects needs the subject as the unit. Per held-out subset and prediction set
(the seed ensemble, each seed, each also with test-time augmentation where predicted), every configured model is
compared with the first (the reference: VGG-19 in the paper's config) on each Table 1 metric: the difference
model - reference with a paired subject-cluster bootstrap interval and p-value, Holm-adjusted over the Table 1
metrics of one subset, prediction set and model pair. Beside it, McNemar's test on the seed ensembles' calls,
whose unit is the image, Holm-adjusted over the subsets of one ensemble set and model pair.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from leukemia_dtl.core.decisions import called_all
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import ENSEMBLE, NEGATIVE_CLASS, PLAIN, POSITIVE_CLASS, TTA
from leukemia_dtl.evaluate.metrics import (
    allows_subject_interval,
    bootstrap_weights,
    metric_values,
    percentile_interval,
    resampled_metrics,
    resampling_units,
    subject_support,
)
from leukemia_dtl.evaluate.paper_values import TABLE1
from leukemia_dtl.evaluate.result_files import align_predictions, is_all, read_predictions
from leukemia_dtl.evaluate.significance import holm, mcnemar_test

# results/stats/{scheme}/subject_comparison.tsv: one row per subset, prediction set, Table 1 metric and model.
SUBJECT_COMPARISON_COLUMNS = (
    "subset",
    "predictions",
    "metric",
    "reference",
    "model",
    "reference_value",
    "model_value",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "holm_family",
    "n_subjects_all",
    "n_subjects_hem",
    "n_bootstrap",
    "confidence",
    "independent_unit",
)
# results/stats/{scheme}/ensemble_mcnemar.tsv: one row per subset, ensemble set and model.
ENSEMBLE_MCNEMAR_COLUMNS = (
    "subset",
    "predictions",
    "reference",
    "model",
    "n",
    "b",
    "c",
    "statistic",
    "p_value",
    "method",
    "p_holm",
    "independent_unit",
)
COMPARED_METRICS = tuple(TABLE1)
# The rows of one Holm family share these.
FAMILY_KEYS = ["subset", "predictions", "reference", "model"]

SeedKey = tuple[str, str, int, str]  # (model, kind, seed, subset)
EnsembleKey = tuple[str, str, str]  # (model, kind, subset)
PathLike = str | os.PathLike


def prediction_set_name(kind: str, seed: int | None = None) -> str:
    """A prediction set as its folder is named: seed<N>, or ensemble for ``seed`` None, with /tta for TTA."""
    members = ENSEMBLE if seed is None else f"seed{seed}"
    return members if kind == PLAIN else f"{members}/{TTA}"


def bootstrap_p_value(differences) -> float:
    """Two-sided p-value of "no difference" from B bootstrap differences d*, by inverting the percentile interval
    (Hall 1992, The Bootstrap and Edgeworth Expansion, section 3.12; Thulin 2024, Modern Statistics with R, section
    14.2): the smallest a whose (1 - a) percentile interval, the order statistics d*(k) and d*(B + 1 - k) with
    k = floor((B + 1) a / 2), excludes 0:

        p = min(1, 2 (1 + min(#{d* <= 0}, #{d* >= 0})) / (B + 1)).

    So p >= 2 / (B + 1), the least that B resamples can show, and a difference of 0 in every resample gives 1.
    Resamples with a difference of exactly 0 count in both tails, which errs towards larger p."""
    differences = np.asarray(differences, dtype=float)
    smaller_tail = min(int((differences <= 0).sum()), int((differences >= 0).sum()))
    return min(1.0, 2 * (1 + smaller_tail) / (len(differences) + 1))


def paired_subject_bootstrap(
    y_true,
    reference_p_all,
    model_p_all,
    subjects,
    *,
    threshold: float,
    n_bootstrap: int,
    seed: int,
    confidence: float,
    min_subjects_per_class: int,
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Two models' predictions on the same images compared on every Table 1 metric, and the subjects per class.

    Per metric: reference_value and model_value (as :func:`metrics.metric_values`, ALL called at ``threshold``),
    difference (model - reference) and, with at least ``min_subjects_per_class`` subjects of each class, ci_low,
    ci_high (the percentile interval at ``confidence``) and p_value (:func:`bootstrap_p_value`) of the difference
    over ``n_bootstrap`` resamples; below that, NaN. A resample draws ``subjects`` (one ID per image) with
    replacement within their class, each with all its images (:func:`metrics.bootstrap_weights`, generator seeded
    with ``seed``), and scores both models on the same draws.
    """
    codes, unit_class = resampling_units(subjects, y_true)
    support = subject_support(unit_class)
    reference_values = metric_values(y_true, reference_p_all, threshold)
    model_values = metric_values(y_true, model_p_all, threshold)
    comparison = {
        metric: {
            "reference_value": reference_values[metric],
            "model_value": model_values[metric],
            "difference": model_values[metric] - reference_values[metric],
            "ci_low": np.nan,
            "ci_high": np.nan,
            "p_value": np.nan,
        }
        for metric in COMPARED_METRICS
    }
    if not allows_subject_interval(support, min_subjects_per_class):
        return comparison, support
    weights = bootstrap_weights(codes, unit_class, n_bootstrap, np.random.default_rng(seed))
    reference_resampled = resampled_metrics(weights, y_true, reference_p_all, threshold)
    model_resampled = resampled_metrics(weights, y_true, model_p_all, threshold)
    for metric, entry in comparison.items():
        differences = model_resampled[metric] - reference_resampled[metric]
        entry |= percentile_interval(differences, confidence, "ci") | {"p_value": bootstrap_p_value(differences)}
    return comparison, support


def prediction_sets(
    seed_files: Mapping[SeedKey, PathLike], ensemble_files: Mapping[EnsembleKey, PathLike]
) -> dict[tuple[str, str], dict[str, PathLike]]:
    """{(subset, prediction set): {model: prediction file}} in row order: subsets in order of first appearance,
    then ensemble, ensemble/tta, the seeds in order, and the seeds' TTA sets in order."""
    entries = [(subset, kind, None, model, path) for (model, kind, subset), path in ensemble_files.items()]
    entries += [(subset, kind, seed, model, path) for (model, kind, seed, subset), path in seed_files.items()]
    subsets = list(dict.fromkeys(entry[0] for entry in entries))

    def row_order(entry):
        subset, kind, seed, _, _ = entry
        return subsets.index(subset), seed is not None, kind != PLAIN, -1 if seed is None else int(seed)

    sets: dict[tuple[str, str], dict[str, PathLike]] = {}
    for subset, kind, seed, model, path in sorted(entries, key=row_order):
        sets.setdefault((subset, prediction_set_name(kind, seed)), {})[model] = path
    return sets


def _aligned_pairs(
    files: Mapping[str, PathLike], models: Sequence[str], subset: str, predictions: str
) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(model, the reference's predictions, the model's) for each model after the first, aligned by image path."""
    missing = [model for model in models if model not in files]
    if missing:
        raise UserError(
            f"No {predictions} predictions of {', '.join(missing)} on {subset} to compare; every configured model "
            "needs the same prediction sets (seeds, ensemble, TTA). Predict them, or leave the model out."
        )
    reference_path = files[models[0]]
    reference = read_predictions(reference_path)
    for model in models[1:]:
        aligned_reference, aligned_model = align_predictions(
            reference, read_predictions(files[model]), reference_path, files[model]
        )
        yield model, aligned_reference, aligned_model


def _holm_by_family(rows: list[dict], columns: Sequence[str], family: list[str]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=[column for column in columns if column != "p_holm"])
    table["p_holm"] = table.groupby(family, sort=False)["p_value"].transform(holm)
    return table[list(columns)]


def subject_comparison(
    seed_files: Mapping[SeedKey, PathLike],
    ensemble_files: Mapping[EnsembleKey, PathLike],
    models: Sequence[str],
    *,
    threshold: float,
    n_bootstrap: int,
    seed: int,
    confidence: float,
    min_subjects_per_class: int,
) -> pd.DataFrame:
    """SUBJECT_COMPARISON_COLUMNS: :func:`paired_subject_bootstrap` of each model against ``models[0]`` on every
    held-out subset and prediction set of the files, keyed by (model, kind, seed, subset) and (model, kind,
    subset). ``p_holm`` adjusts over the Table 1 metrics of one subset, prediction set and model pair, the family
    ``holm_family`` names; where a class has fewer than ``min_subjects_per_class`` subjects, interval and p are
    empty and ``holm_family`` says why."""
    rows = []
    for (subset, predictions), files in prediction_sets(seed_files, ensemble_files).items():
        for model, reference, compared in _aligned_pairs(files, models, subset, predictions):
            comparison, support = paired_subject_bootstrap(
                is_all(reference),
                reference["p_all"],
                compared["p_all"],
                reference["subject"],
                threshold=threshold,
                n_bootstrap=n_bootstrap,
                seed=seed,
                confidence=confidence,
                min_subjects_per_class=min_subjects_per_class,
            )
            n_all, n_hem = support[POSITIVE_CLASS], support[NEGATIVE_CLASS]
            family = (
                f"{len(COMPARED_METRICS)} Table 1 metrics of {subset}, {predictions}, {model} vs {models[0]}"
                if allows_subject_interval(support, min_subjects_per_class)
                else f"none: fewer than {min_subjects_per_class} subjects of a class ({n_all} ALL, {n_hem} HEM)"
            )
            shared = {"holm_family": family, "n_subjects_all": n_all, "n_subjects_hem": n_hem}
            shared |= {"n_bootstrap": n_bootstrap, "confidence": confidence, "independent_unit": "subject"}
            rows += [
                {"subset": subset, "predictions": predictions, "metric": metric, "reference": models[0], "model": model}
                | entry
                | shared
                for metric, entry in comparison.items()
            ]
    return _holm_by_family(rows, SUBJECT_COMPARISON_COLUMNS, FAMILY_KEYS)


def ensemble_mcnemar(
    ensemble_files: Mapping[EnsembleKey, PathLike], models: Sequence[str], *, threshold: float, mcnemar_exact_below: int
) -> pd.DataFrame:
    """ENSEMBLE_MCNEMAR_COLUMNS: McNemar's test (:func:`significance.mcnemar_test`) of each model's seed ensemble
    against ``models[0]``'s on the correctness of their calls at ``threshold``, per subset and ensemble set (files
    keyed by (model, kind, subset)); b counts the images only the reference calls right, c those only the model
    does. ``p_holm`` adjusts over the subsets of one ensemble set and model pair."""
    rows = []
    for (subset, predictions), files in prediction_sets({}, ensemble_files).items():
        for model, reference, compared in _aligned_pairs(files, models, subset, predictions):
            truth = is_all(reference)
            correct = [called_all(frame["p_all"], threshold) == truth for frame in (reference, compared)]
            rows.append(
                {"subset": subset, "predictions": predictions, "reference": models[0], "model": model}
                | {"n": len(truth)}
                | mcnemar_test(*correct, mcnemar_exact_below)
                | {"independent_unit": "image"}
            )
    return _holm_by_family(rows, ENSEMBLE_MCNEMAR_COLUMNS, ["predictions", "reference", "model"])
