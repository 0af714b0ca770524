"""Table 1 (performance) from the evaluation results: in the paper's shape (table1_performance: per subset and
metric each model's seeds' mean ± sd beside the paper's value, and the training-noise t-test beside the paper's
test), and its rows beyond the paper (table1_extended: the seed ensemble with image and subject intervals and the
ensembles' comparisons, the validation thresholds, test-time augmentation).

Both are tables in two parts (:mod:`formatting`); their captions name the independent unit, confidence level and
Holm family of each spread, interval and test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import ENSEMBLE, NEGATIVE_CLASS, POSITIVE_CLASS, TTA
from leukemia_dtl.evaluate import paper_values
from leukemia_dtl.evaluate.formatting import (
    CAPTION,
    Columns,
    mean_sd,
    mean_sd_text,
    model_columns,
    paper_value_columns,
    two_part_table,
)
from leukemia_dtl.evaluate.metrics import AUC_METRICS
from leukemia_dtl.evaluate.paper_values import model_name
from leukemia_dtl.evaluate.result_files import metric_entry, read_keyed_metrics

TABLE1_METRICS = tuple(paper_values.TABLE1)
# Table 1's rows as the paper prints them, then the other metrics of metrics.classification_metrics.
METRIC_LABELS = {metric: row.label for metric, row in paper_values.TABLE1.items()} | {
    "balanced_accuracy": "Balanced Accuracy",
    "specificity": "Specificity",
    "weighted_f1": "Weighted F1-Score",
    "roc_auc_delong": "ROC-AUC (DeLong)",
}
# The paper evaluates on its test split only, so its numbers sit beside our test rows.
PAPER_SUBSET = "test"


def _p_text(p_value: float) -> str:
    # The paper's style: a floor of <0.001 instead of many zeros.
    if math.isnan(p_value):
        return "n/a"
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"


def _interval_text(low: float, high: float, digits: int) -> str:
    """ "[0.612, 0.804]"; "[n/a]" without bounds (a t-test over one seed has none)."""
    if math.isnan(low) or math.isnan(high):
        return "[n/a]"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _pair_label(model: str, reference: str) -> str:
    return f"{model_name(model)} vs {model_name(reference)}"


def _p_and_holm_text(p_value: float, p_holm: float) -> str:
    """ "0.012 (0.048)": a p-value, then its Holm-adjusted value."""
    return "n/a" if math.isnan(p_value) else f"{_p_text(p_value)} ({_p_text(p_holm)})"


def _difference_text(difference: float, low: float, high: float) -> str:
    return f"{difference:+.3f} {_interval_text(low, high, 3)}"


# Table 1's paired t-test takes the seed as its unit, so it measures how much retraining varies on one fixed
# test set (training noise), not whether the models differ on new patients; its columns say so.
TRAINING_NOISE_TEST = "training-noise t-test"


def _comparison_columns(ttests: pd.DataFrame, subset: str, metric: str, model: str, reference: str) -> Columns:
    """Paired t-test of ``model`` minus ``reference``, whichever order paired_ttests put them in."""
    forward = (ttests["model_a"] == model) & (ttests["model_b"] == reference)
    backward = (ttests["model_a"] == reference) & (ttests["model_b"] == model)
    found = ttests[(ttests["subset"] == subset) & (ttests["metric"] == metric) & (forward | backward)]
    if found.empty:
        raise UserError(
            f"The paired t-tests have no {metric} comparison of {model} with {reference} on {subset}; "
            "compute them from the same per-seed metrics and models as the table."
        )
    test = found.iloc[0]
    sign = 1.0 if test["model_a"] == model else -1.0
    ci_low, ci_high = sorted((sign * test["ci_low"], sign * test["ci_high"]))
    pair, label = f"{model}_vs_{reference}", _pair_label(model, reference)
    shown = {
        f"{label}, {TRAINING_NOISE_TEST}: difference [95% CI]": _difference_text(sign * test["diff"], ci_low, ci_high),
        f"{label}, {TRAINING_NOISE_TEST}: p (Holm p)": _p_and_holm_text(test["p_value"], test["p_holm"]),
    }
    data = {
        f"diff_{pair}": sign * test["diff"],
        f"ci_low_{pair}": ci_low,
        f"ci_high_{pair}": ci_high,
        f"p_{pair}": test["p_value"],
        f"p_holm_{pair}": test["p_holm"],
    }
    return shown, data


def _paper_comparison_columns(subset: str, metric: str, model: str, reference: str) -> Columns:
    """The paper's p-value and CI for the same pair, blank where the paper has none."""
    label = _pair_label(model, reference)
    interval = paper_values.paper_difference_ci(metric, model, reference) if subset == PAPER_SUBSET else None
    low, high = interval or (math.nan, math.nan)
    shown = {
        f"{label}, paper: p": paper_values.TABLE1[metric].p_value if interval else "",
        f"{label}, paper: 95% CI": _interval_text(low, high, 2) if interval else "",
    }
    return shown, {f"paper_ci_low_{model}_vs_{reference}": low, f"paper_ci_high_{model}_vs_{reference}": high}


def _range_text(values) -> str:
    low, high = min(values), max(values)
    return f"{low:.3g}" if low == high else f"{low:.3g} to {high:.3g}"


def _row_key(subset: str, metric: str) -> Columns:
    return {"Subset": subset, "Metric": METRIC_LABELS[metric]}, {"subset": subset, "metric": metric}


def _paper_row(values, ttests, models, subset, metric) -> list[Columns]:
    """A row of the paper's Table 1: each model's mean ± sd over seeds beside the paper's value, then each later
    model compared with the first beside the paper's comparison."""
    paper_row = paper_values.TABLE1[metric].values if subset == PAPER_SUBSET else None
    row = [_row_key(subset, metric)]
    for model in models:
        if (subset, metric, model) not in values:
            raise UserError(
                f"No per-seed {metric} results for {model} on {subset}; evaluate {model} on "
                f"{subset} or leave {subset} out of the table."
            )
        row += [
            model_columns(values[subset, metric, model], model, digits=3),
            paper_value_columns(paper_row, model, ".2f"),
        ]
    reference = models[0]
    for model in models[1:]:
        row += [
            _comparison_columns(ttests, subset, metric, model, reference),
            _paper_comparison_columns(subset, metric, model, reference),
        ]
    return row


def table1_caption(per_seed: pd.DataFrame, ttests: pd.DataFrame, models: Sequence[str], thresholds) -> str:
    """What Table 1's numbers rest on: the seeds, the threshold, and the t-test's unit and Holm family."""
    seeds = per_seed[per_seed["model"].isin(models)].groupby("model")["seed"].nunique()
    caption = (
        f"Each model's mean ± sd is over its {_range_text(seeds)} seed(s) (the seed the unit: training variance), an "
        f"image called ALL when p_all >= {_range_text(thresholds)}; the paper's values stand beside the test rows. "
    )
    if len(models) > 1:
        family = ttests.groupby(["subset", "model_a", "model_b"]).size()
        caption += (
            f"The {TRAINING_NOISE_TEST} pairs each later model with {model_name(models[0])} seed by seed (difference: "
            f"the model minus {model_name(models[0])}); the seed "
            "is the independent unit, so it says how much retraining varies on one fixed test set, not whether the "
            f"models differ on new patients; Holm over the {_range_text(family)} Table 1 metrics of one subset and "
            "model pair. The paper's p and 95% CI stand as printed. "
        )
    return caption + (
        "The seed ensemble, the validation thresholds and test-time augmentation, with image and subject intervals "
        "and subject-level comparisons, are in table1_extended."
    )


def table1_performance(
    per_seed: pd.DataFrame,
    ttests: pd.DataFrame,
    models: Sequence[str],
    subsets: Sequence[str],
    thresholds: Sequence[float],
) -> pd.DataFrame:
    """The paper's Table 1 per subset, a row per metric: each model's mean ± sd over seeds beside the paper's value,
    and each model other than the first compared with the first (the reference, as VGG-19 in the paper): difference
    model minus reference with its 95 % CI, paired t-test p and Holm p from ``ttests``
    (:func:`significance.paired_ttests`), beside the paper's p and CI on the test rows. ``thresholds`` are the
    seeds' (``p_all`` at which an image is called ALL), named in ``attrs["caption"]`` (:func:`table1_caption`)."""
    values = {
        key: group.to_numpy(dtype=float) for key, group in per_seed.groupby(["subset", "metric", "model"])["value"]
    }
    table = two_part_table(
        [_paper_row(values, ttests, models, subset, metric) for subset in subsets for metric in TABLE1_METRICS]
    )
    table.attrs[CAPTION] = table1_caption(per_seed, ttests, models, thresholds)
    return table


# table1_extended's kinds of rows ("Predictions" column): the seed ensemble, the seeds at their validation
# thresholds, and with test-time augmentation the seeds and their ensemble.
ENSEMBLE_ROWS = "ensemble"
VALIDATION_THRESHOLD_ROWS = "seeds, validation threshold"
TTA_SEEDS_ROWS = "TTA seeds"
TTA_ENSEMBLE_ROWS = "TTA ensemble"
# The ensembles as the comparison tables name them (their "predictions" column).
COMPARED_ENSEMBLES = {ENSEMBLE_ROWS: ENSEMBLE, TTA_ENSEMBLE_ROWS: f"{ENSEMBLE}/{TTA}"}
VALIDATION_SECTION = "at_validation_threshold"
THRESHOLDED_TABLE1_METRICS = tuple(metric for metric in TABLE1_METRICS if metric not in AUC_METRICS)
# McNemar's test compares how often each model's calls are right, so its p stands on the accuracy rows.
MCNEMAR_METRIC = "accuracy"
NO_INTERVAL = (math.nan, math.nan)
# What an ensemble's row reads of each metric: its value with the image and subject bootstrap intervals.
ENSEMBLE_FIELDS = ("value", "ci_low", "ci_high", "subject_ci_low", "subject_ci_high")

RunMetrics = Mapping[tuple[str, int, str], Mapping]  # (model, seed, subset) -> a metrics JSON
SetMetrics = Mapping[tuple[str, str], Mapping]  # (model, subset) -> an ensemble's metrics JSON


@dataclass(frozen=True)
class PredictionSets:
    """Table 1's rows beyond the paper's, from metrics JSONs as the evaluate step writes them: the plain seeds'
    (for their validation thresholds), the seed ensemble's, and with test-time augmentation the seeds' and the
    ensemble's (empty without it). Subject intervals are shown for ``subject_ci_subsets`` only."""

    seeds: RunMetrics
    ensemble: SetMetrics
    tta_seeds: RunMetrics = field(default_factory=dict)
    tta_ensemble: SetMetrics = field(default_factory=dict)
    subject_ci_subsets: Sequence[str] = ()


def read_prediction_sets(params, inputs) -> PredictionSets:
    """The :class:`PredictionSets` of a rule whose inputs ``metrics``, ``ensemble_metrics``, ``tta_metrics`` and
    ``tta_ensemble_metrics`` list the seeds' and the ensembles' metrics files (each file's run read from its path),
    with its param ``subject_ci_subsets`` (performance_tables, plot_forest)."""
    seed, ensemble = ("model", "seed", "subset"), ("model", "subset")
    return PredictionSets(
        seeds=read_keyed_metrics(inputs.metrics, *seed),
        ensemble=read_keyed_metrics(inputs.ensemble_metrics, *ensemble),
        tta_seeds=read_keyed_metrics(inputs.tta_metrics, *seed),
        tta_ensemble=read_keyed_metrics(inputs.tta_ensemble_metrics, *ensemble),
        subject_ci_subsets=params.subject_ci_subsets,
    )


@dataclass(frozen=True)
class EnsembleComparisons:
    """Each later model's ensembles against the first model's, as rule compare_subjects writes them: ``subjects``
    (subject_comparison.tsv) per metric the difference with its paired subject-bootstrap interval and p;
    ``mcnemar`` (ensemble_mcnemar.tsv) McNemar's test of the calls. Both are keyed by subset, predictions
    (``ensemble``, ``ensemble/tta``), reference and model."""

    subjects: pd.DataFrame
    mcnemar: pd.DataFrame


def _min_subjects(metrics: Mapping, what: str) -> int:
    if "min_subjects_per_class" not in metrics:
        raise UserError(
            f"The metrics of {what} lack 'min_subjects_per_class' (the fewest subjects of a class for a subject "
            "interval); they come from another version of the evaluation step. Delete those metrics files and "
            "re-run the evaluation."
        )
    return metrics["min_subjects_per_class"]


def _subjects_shortfall(support: Mapping[str, int], min_subjects: int) -> str:
    """Why a subject interval is null, e.g. "n/a (2 HEM subjects, fewer than 5)"."""
    short = {label: count for label, count in support.items() if count < min_subjects}
    counts = " and ".join(f"{count} {label}" for label, count in short.items())
    return f"n/a ({counts} subject{'' if sum(short.values()) == 1 else 's'}, fewer than {min_subjects})"


def _ensemble_metrics(metrics: SetMetrics, model: str, subset: str, label: str) -> Mapping:
    if (model, subset) not in metrics:
        raise UserError(
            f"No {label} metrics for {model} on {subset}; evaluate them or leave {subset} out of the table."
        )
    return metrics[model, subset]


def _seed_values(metrics: RunMetrics, model: str, subset: str, metric: str, label: str, section=None) -> list:
    runs = {
        seed: run
        for (run_model, seed, run_subset), run in metrics.items()
        if (run_model, run_subset) == (model, subset)
    }
    if not runs:
        raise UserError(
            f"No {label} metrics for {model} on {subset}; evaluate them or leave {subset} out of the table."
        )
    return [
        metric_entry(runs[seed], metric, f"of {model} seed {seed} on {subset}", section=section)["value"]
        for seed in sorted(runs)
    ]


def _model_group(
    model: str,
    value_text: str,
    mean: float,
    sd=math.nan,
    n_seeds=None,
    image=NO_INTERVAL,
    subject=NO_INTERVAL,
    no_subject_interval: str = "",
) -> Columns:
    """One model's columns of table1_extended: its value (an ensemble's) or mean ± sd over seeds, and an ensemble's
    image and subject bootstrap intervals; ``no_subject_interval`` says why a subject interval is null."""
    name = model_name(model)
    shown = {
        name: value_text,
        f"{name} image CI": "" if math.isnan(image[0]) else _interval_text(*image, 3),
        f"{name} subject CI": no_subject_interval if math.isnan(subject[0]) else _interval_text(*subject, 3),
    }
    data = {
        f"{model}_mean": mean,
        f"{model}_sd": sd,
        f"{model}_n_seeds": n_seeds,
        f"{model}_ci_low": image[0],
        f"{model}_ci_high": image[1],
        f"{model}_subject_ci_low": subject[0],
        f"{model}_subject_ci_high": subject[1],
    }
    return shown, data


def _seeds_group(values, model: str) -> Columns:
    mean, sd, n_seeds = mean_sd(values)
    return _model_group(model, mean_sd_text(mean, sd, 3), mean, sd, n_seeds)


def _ensemble_group(metrics: Mapping, metric: str, model: str, with_subject: bool, what: str) -> Columns:
    entry = metric_entry(metrics, metric, f"of {what}", fields=ENSEMBLE_FIELDS)
    value, image = entry["value"], (entry["ci_low"], entry["ci_high"])
    if with_subject and entry["subject_ci_low"] is None:
        shortfall = _subjects_shortfall(metrics["subject_support"], _min_subjects(metrics, what))
        return _model_group(model, f"{value:.3f}", value, image=image, no_subject_interval=shortfall)
    subject = (entry["subject_ci_low"], entry["subject_ci_high"]) if with_subject else NO_INTERVAL
    return _model_group(model, f"{value:.3f}", value, image=image, subject=subject)


def _comparison_group(model, reference, subject=None, mcnemar=None, min_subjects=None) -> Columns:
    """``model``'s ensemble minus ``reference``'s: the difference with its paired subject-bootstrap interval and p
    (``subject``, a row of subject_comparison.tsv, with ``min_subjects`` to say why an interval is null) and
    McNemar's p (``mcnemar``, a row of ensemble_mcnemar.tsv); blank where either is None."""
    label, pair = _pair_label(model, reference), f"{model}_vs_{reference}"
    numbers = {
        name: math.nan if subject is None else float(subject[name])
        for name in ("difference", "ci_low", "ci_high", "p_value", "p_holm")
    }
    if subject is None:
        difference_text = p_text = ""
    elif math.isnan(numbers["ci_low"]):
        support = {POSITIVE_CLASS: int(subject["n_subjects_all"]), NEGATIVE_CLASS: int(subject["n_subjects_hem"])}
        p_text = _subjects_shortfall(support, min_subjects)
        difference_text = f"{numbers['difference']:+.3f}, CI {p_text}"
    else:
        difference_text = _difference_text(numbers["difference"], numbers["ci_low"], numbers["ci_high"])
        p_text = _p_and_holm_text(numbers["p_value"], numbers["p_holm"])
    mcnemar_p = NO_INTERVAL if mcnemar is None else (float(mcnemar["p_value"]), float(mcnemar["p_holm"]))
    shown = {
        f"{label}: difference [subject CI]": difference_text,
        f"{label}: p (Holm p), subject bootstrap": p_text,
        f"{label}: McNemar p (Holm p)": "" if mcnemar is None else _p_and_holm_text(*mcnemar_p),
    }
    data = {
        f"subject_diff_{pair}": numbers["difference"],
        f"subject_ci_low_{pair}": numbers["ci_low"],
        f"subject_ci_high_{pair}": numbers["ci_high"],
        f"subject_p_{pair}": numbers["p_value"],
        f"subject_p_holm_{pair}": numbers["p_holm"],
        f"mcnemar_p_{pair}": mcnemar_p[0],
        f"mcnemar_p_holm_{pair}": mcnemar_p[1],
    }
    return shown, data


def _comparison_row(table: pd.DataFrame, what: str, **keys) -> pd.Series:
    """The one row of ``table`` whose columns hold ``keys``."""
    found = table[(table[list(keys)] == pd.Series(keys)).all(axis=1)]
    if found.empty:
        wanted = ", ".join(f"{name} {value}" for name, value in keys.items())
        raise UserError(
            f"The {what} have no row for {wanted}; compute them (rule compare_subjects) for the same models, "
            "subsets and prediction sets as the table."
        )
    return found.iloc[0]


def _set_row_key(subset: str, metric: str, label: str) -> Columns:
    shown, data = _row_key(subset, metric)
    return shown | {"Predictions": label}, data | {"predictions": label}


def _ensemble_rows(metrics: SetMetrics, label, comparisons, models, subset, with_subject) -> list[list[Columns]]:
    """Rows of each model's ensemble value with its image and subject bootstrap intervals, then each later model's
    ensemble compared with the first's: by subjects (``with_subject``) and, on the accuracy row, by McNemar."""
    files = {model: _ensemble_metrics(metrics, model, subset, label) for model in models}
    reference, predictions = models[0], COMPARED_ENSEMBLES[label]
    rows = []
    for metric in TABLE1_METRICS:
        row = [_set_row_key(subset, metric, label)]
        row += [
            _ensemble_group(files[model], metric, model, with_subject, f"the {label} of {model} on {subset}")
            for model in models
        ]
        for model in models[1:]:
            pair = {"subset": subset, "predictions": predictions, "model": model, "reference": reference}
            subject = (
                _comparison_row(comparisons.subjects, "subject-level comparisons", metric=metric, **pair)
                if with_subject
                else None
            )
            mcnemar = (
                _comparison_row(comparisons.mcnemar, "ensembles' McNemar tests", **pair)
                if metric == MCNEMAR_METRIC
                else None
            )
            min_subjects = _min_subjects(files[model], f"the {label} of {model} on {subset}") if with_subject else None
            row.append(_comparison_group(model, reference, subject, mcnemar, min_subjects))
        rows.append(row)
    return rows


def _seeds_mean_sd_rows(metrics: RunMetrics, label, metric_names, models, subset, section=None) -> list[list[Columns]]:
    """Rows of each model's mean ± sd over seeds of ``metrics`` (or of their ``section``); no comparisons."""
    return [
        [
            _set_row_key(subset, metric, label),
            *(_seeds_group(_seed_values(metrics, model, subset, metric, label, section), model) for model in models),
            *(_comparison_group(model, models[0]) for model in models[1:]),
        ]
        for metric in metric_names
    ]


def table1_extended_caption(
    sets: PredictionSets, comparisons: EnsembleComparisons, models: Sequence[str], subsets: Sequence[str]
) -> str:
    """What table1_extended's numbers rest on: for each spread, interval and test its unit (seeds, images or
    subjects), confidence level and Holm family, and the thresholds."""
    runs = [*sets.seeds.values(), *sets.tta_seeds.values()]
    ensembles = [*sets.ensemble.values(), *sets.tta_ensemble.values()]
    seeds_per_model = [len({seed for model, seed, _ in sets.seeds if model == named}) for named in models]
    subject_subsets = [subset for subset in subsets if subset in sets.subject_ci_subsets]
    validation = [run["validation_threshold"] for run in sets.seeds.values()]
    sentences = [
        f"The seed ensemble is each model's mean p_all over its {_range_text(seeds_per_model)} seed(s), scored once; "
        "seeds rows give the mean ± sd over seeds (the seed the unit: training variance). TTA: test-time "
        f"augmentation. An image is called ALL when p_all >= {_range_text([m['threshold'] for m in runs + ensembles])}"
        "; the validation-threshold rows use each seed's threshold maximising balanced accuracy on its val "
        f"predictions ({_range_text(validation)}).",
        f"Image CI: {_range_text([100 * m['confidence'] for m in ensembles])}% percentile bootstrap interval "
        "resampling images within their class (the image the unit, though a subject's images are not "
        "independent). Subject CI: the same resampling subjects within their class, each with all its images (the "
        f"subject the unit), shown for {', '.join(subject_subsets) or 'no subset'} (subjects unseen in training) and "
        f"n/a below {_range_text([_min_subjects(m, 'the ensembles') for m in ensembles])} subjects of a class.",
    ]
    subjects = comparisons.subjects
    shown = subjects[
        subjects["subset"].isin(subject_subsets) & subjects["predictions"].isin(COMPARED_ENSEMBLES.values())
    ]
    if not shown.empty:
        family = shown.groupby(["subset", "predictions", "reference", "model"]).size()
        sentences.append(
            "Difference [subject CI] and its p: the ensembles' difference (model minus reference) in a paired "
            f"{_range_text(100 * shown['confidence'])}% subject bootstrap, both models scored on the same resampled "
            f"subjects (the subject the unit); Holm over the {_range_text(family)} Table 1 metrics of one subset, "
            "prediction set and model pair."
        )
    if not comparisons.mcnemar.empty:
        family = comparisons.mcnemar.groupby(["predictions", "reference", "model"]).size()
        sentences.append(
            "McNemar p: McNemar's test of the two ensembles' calls on the same images (the image the unit), on the "
            f"Overall Accuracy rows; Holm over the {_range_text(family)} subsets of one ensemble and model pair."
        )
    return " ".join(sentences)


def table1_extended(
    sets: PredictionSets, comparisons: EnsembleComparisons, models: Sequence[str], subsets: Sequence[str]
) -> pd.DataFrame:
    """Table 1's rows beyond the paper, a row per subset, prediction set and metric: the seed ensemble (its value,
    image and subject bootstrap intervals, and each later model's ensemble compared with the first's by subjects
    and McNemar), the seeds at their validation thresholds (mean ± sd) and, given, the TTA seeds and ensemble.
    Subject intervals and comparisons are shown for ``sets.subject_ci_subsets``; a null one says why. What each
    number rests on is in ``attrs["caption"]`` (:func:`table1_extended_caption`)."""
    rows = []
    for subset in subsets:
        with_subject = subset in sets.subject_ci_subsets
        rows += _ensemble_rows(sets.ensemble, ENSEMBLE_ROWS, comparisons, models, subset, with_subject)
        rows += _seeds_mean_sd_rows(
            sets.seeds, VALIDATION_THRESHOLD_ROWS, THRESHOLDED_TABLE1_METRICS, models, subset, VALIDATION_SECTION
        )
        if sets.tta_seeds:
            rows += _seeds_mean_sd_rows(sets.tta_seeds, TTA_SEEDS_ROWS, TABLE1_METRICS, models, subset)
        if sets.tta_ensemble:
            rows += _ensemble_rows(sets.tta_ensemble, TTA_ENSEMBLE_ROWS, comparisons, models, subset, with_subject)
    table = two_part_table(rows)
    table.attrs[CAPTION] = table1_extended_caption(sets, comparisons, models, subsets)
    return table
