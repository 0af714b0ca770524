"""Paper-style figures: training curves (Figs 4-5), ROC curves (Fig. 6), confusion matrices (Fig. 7),
reliability diagrams and a forest plot of Table 1, summarising every seed of each model.

Plot functions take ``{model: [one frame per seed]}`` and return a matplotlib Figure, drawn with the Agg
canvas and no pyplot state in the style of :mod:`figure_style`, whose ``save_figure`` writes it as PNG and PDF.
Prediction frames are those of :func:`result_files.read_predictions`; histories those of
:func:`result_files.read_training_history`.
Every number the ROC legend and the forest plot print comes from the metrics files (``table1.PredictionSets``),
so figures, metrics and tables agree, intervals included at the configured confidence level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import CLASS_NAMES
from leukemia_dtl.evaluate.calibration import (
    CALIBRATION_BINS,
    brier_score,
    expected_calibration_error,
    reliability_curve,
)
from leukemia_dtl.evaluate.figure_style import model_colours, new_figure, styled
from leukemia_dtl.evaluate.formatting import mean_sd, mean_sd_text
from leukemia_dtl.evaluate.metrics import confusion_counts
from leukemia_dtl.evaluate.paper_values import TABLE1, model_name
from leukemia_dtl.evaluate.result_files import is_all, metric_entry
from leukemia_dtl.evaluate.table1 import (
    ENSEMBLE_ROWS,
    METRIC_LABELS,
    PAPER_SUBSET,
    TABLE1_METRICS,
    TTA_ENSEMBLE_ROWS,
    TTA_SEEDS_ROWS,
    VALIDATION_SECTION,
    PredictionSets,
    RunMetrics,
    SetMetrics,
)

# Confusion matrices list ALL first, as the paper's Fig. 7 does.
CONFUSION_ORDER = CLASS_NAMES[::-1]
BAND_ALPHA = 0.2
SEED_LINE_ALPHA = 0.4
ROC_MAX_THRESHOLDS = 2001
# Training curves' y axes; accuracy is the training loop's, at the argmax whatever statistics.threshold says.
TRAINING_CURVE_LABELS = {"accuracy": "Accuracy (argmax)", "loss": "Loss"}
# The prediction set of the seeds' own metrics, as the paper's Table 1 reports them (mean ± sd over seeds).
SEEDS_SET = "seeds"
# What the ROC legend and the forest plot read of an ensemble's metric.
INTERVAL_FIELDS = ("value", "ci_low", "ci_high")


def _spread_text(values, digits: int = 3) -> str:
    mean, sd, _ = mean_sd(values)
    return mean_sd_text(mean, sd, digits)


def _seeds_text(n_seeds: int) -> str:
    return "1 seed" if n_seeds == 1 else f"{n_seeds} seeds"


def _plot_mean_and_band(axes, runs: Sequence[pd.Series], colour: str, linestyle: str, label: str) -> None:
    """Mean over seeds as a line, min-max over seeds as a band (runs are aligned by their index)."""
    stacked = pd.concat(runs, axis=1)
    axes.plot(stacked.index, stacked.mean(axis=1), color=colour, linestyle=linestyle, label=label)
    if len(runs) > 1:
        axes.fill_between(stacked.index, stacked.min(axis=1), stacked.max(axis=1), color=colour, alpha=BAND_ALPHA)


@styled
def plot_training_curves(histories: Mapping[str, Sequence[pd.DataFrame]]) -> Figure:
    """Accuracy and loss per epoch, training (solid) and validation (dashed): one row per model as the
    paper's Figs 4-5, mean over seeds with a min-max band.

    The accuracy is Keras's, measured during training at the model's argmax (p_all >= 0.5); the history
    holds no probabilities to call at ``statistics.threshold``, so the axis says so."""
    colours = model_colours(list(histories))
    figure = new_figure(figsize=(9, 3.2 * len(histories)))
    grid = figure.subplots(len(histories), 2, squeeze=False, sharex=True)
    panel_letters = iter("abcdefghijklmnopqrstuvwxyz")
    for (model, runs), row in zip(histories.items(), grid, strict=True):
        for axes, quantity in zip(row, ("accuracy", "loss"), strict=True):
            for prefix, linestyle, stage in (("", "-", "Training"), ("val_", "--", "Validation")):
                series = [run.set_index("epoch")[prefix + quantity] for run in runs]
                _plot_mean_and_band(axes, series, colours[model], linestyle, stage)
            handles, _ = axes.get_legend_handles_labels()
            if len(runs) > 1:
                handles.append(Patch(color=colours[model], alpha=BAND_ALPHA, label="Min–max over seeds"))
            axes.legend(handles=handles, title=f"Mean of {_seeds_text(len(runs))}")
            axes.set_title(f"({next(panel_letters)}) {model_name(model)}: {quantity}")
            axes.set_ylabel(TRAINING_CURVE_LABELS[quantity])
            axes.grid(alpha=0.3)
    for axes in grid[-1]:
        axes.set_xlabel("Epoch")
    return figure


def _labels_of_both_classes(frame: pd.DataFrame, model: str) -> np.ndarray:
    y_true = is_all(frame)
    if y_true.min() == y_true.max():
        raise UserError(
            f"A prediction file of {model} holds only {CLASS_NAMES[y_true[0]]} images; a ROC curve needs both "
            "ALL and HEM. Check the subset's labels."
        )
    return y_true


def _roc_thresholds(p_all: np.ndarray) -> np.ndarray:
    """Every score as a threshold, thinned to quantiles when there are many; inf ends the curve at (0, 0)."""
    quantiles = np.quantile(p_all, np.linspace(0, 1, ROC_MAX_THRESHOLDS), method="inverted_cdf")
    return np.append(np.unique(quantiles), np.inf)


def _rates_at(thresholds: np.ndarray, y_true: np.ndarray, p_all: np.ndarray) -> np.ndarray:
    """False and true positive rates, rows of a (2, thresholds) array, calling ALL at p_all >= threshold."""
    rates = []
    for scores in (np.sort(p_all[y_true == 0]), np.sort(p_all[y_true == 1])):
        rates.append(1 - np.searchsorted(scores, thresholds, side="left") / len(scores))
    return np.array(rates)


def _seed_runs(runs: RunMetrics, model: str, subset: str, label: str) -> list[Mapping]:
    """The metrics JSONs of ``model``'s seeds on ``subset``, in seed order."""
    found = {
        seed: run for (run_model, seed, run_subset), run in runs.items() if (run_model, run_subset) == (model, subset)
    }
    if not found:
        raise UserError(f"No {label} metrics for {model} on {subset}; evaluate them before drawing the figure.")
    return [found[seed] for seed in sorted(found)]


def _ensemble_run(runs: SetMetrics, model: str, subset: str, label: str) -> Mapping:
    if (model, subset) not in runs:
        raise UserError(f"No {label} metrics for {model} on {subset}; evaluate them before drawing the figure.")
    return runs[model, subset]


def _confidence_text(runs: Sequence[Mapping], what: str) -> str:
    """The confidence level of the metrics files' intervals as "90%"; a UserError if they were computed at more
    than one."""
    if any("confidence" not in run for run in runs):
        raise UserError(
            f"The metrics of {what} lack their intervals' confidence level; they come from another version of the "
            "evaluation step. Delete those metrics files and re-run the evaluation."
        )
    levels = sorted({run["confidence"] for run in runs})
    if len(levels) > 1:
        raise UserError(
            f"The metrics of {what} hold intervals at {len(levels)} confidence levels "
            f"({', '.join(f'{100 * level:g}%' for level in levels)}); re-run the evaluation so they share one."
        )
    return f"{100 * levels[0]:g}%"


def _operating_point(seeds: Sequence[Mapping], what: str) -> tuple[float, float]:
    """The seeds' mean false and true positive rates at their validation thresholds (chosen on val)."""
    rates = [
        (
            1 - metric_entry(run, "specificity", f"of {what}", section=VALIDATION_SECTION)["value"],
            metric_entry(run, "recall_all", f"of {what}", section=VALIDATION_SECTION)["value"],
        )
        for run in seeds
    ]
    return tuple(np.mean(rates, axis=0))


@styled
def plot_roc_curves(predictions: Mapping[str, Sequence[pd.DataFrame]], metrics: PredictionSets, subset: str) -> Figure:
    """ROC per model as Fig. 6, threshold-averaged over seeds (mean FPR and TPR at each threshold), each seed's
    curve thin behind it.

    The legend's numbers are the metrics files' (``metrics``: the seeds' and the ensemble's on ``subset``): the
    seeds' ROC-AUC as mean ± sd, and the seed ensemble's DeLong interval at the level the files were computed at.
    The marked point per model is its operating point at the validation threshold: the seeds' mean FPR and TPR
    at each seed's threshold chosen on val, as in Table 1. No point is chosen on the plotted subset's labels."""
    colours = model_colours(list(predictions))
    figure = new_figure(figsize=(6, 7.5))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="Chance")
    for model, runs in predictions.items():
        truths = [_labels_of_both_classes(run, model) for run in runs]
        scores = [run["p_all"].to_numpy(dtype=float) for run in runs]
        thresholds = _roc_thresholds(np.concatenate(scores))
        rates = np.array([_rates_at(thresholds, y_true, p_all) for y_true, p_all in zip(truths, scores, strict=True)])
        if len(runs) > 1:
            for fpr, tpr in rates:
                axes.plot(fpr, tpr, color=colours[model], linewidth=0.7, alpha=SEED_LINE_ALPHA)
        seeds = _seed_runs(metrics.seeds, model, subset, SEEDS_SET)
        ensemble = _ensemble_run(metrics.ensemble, model, subset, ENSEMBLE_ROWS)
        what = f"{model} on {subset}"
        aucs = [metric_entry(run, "roc_auc", f"of {what}")["value"] for run in seeds]
        delong = metric_entry(ensemble, "roc_auc_delong", f"of the ensemble of {what}", fields=INTERVAL_FIELDS)
        confidence = _confidence_text([ensemble], f"the ensemble of {what}")
        label = (
            f"{model_name(model)}: AUC {_spread_text(aucs)} over {_seeds_text(len(seeds))};\n"
            f"ensemble {delong['value']:.3f}, {confidence} DeLong CI {delong['ci_low']:.3f}–{delong['ci_high']:.3f}"
        )
        mean_fpr, mean_tpr = rates.mean(axis=0)
        axes.plot(mean_fpr, mean_tpr, color=colours[model], linewidth=2, label=label)
        point_fpr, point_tpr = _operating_point(seeds, what)
        axes.plot(
            point_fpr,
            point_tpr,
            marker="o",
            markersize=8,
            markeredgecolor="black",
            color=colours[model],
            linestyle="none",
            label=f"{model_name(model)}: at the validation threshold chosen on val\n"
            f"(seeds' mean FPR {point_fpr:.3f}, TPR {point_tpr:.3f})",
        )
    handles, _ = axes.get_legend_handles_labels()
    if any(len(runs) > 1 for runs in predictions.values()):
        handles.append(Line2D([], [], color="grey", linewidth=0.7, alpha=SEED_LINE_ALPHA, label="Single seeds"))
    # Below the axes, the long labels never hide a curve.
    figure.legend(
        handles=handles,
        loc="outside lower center",
        title="Curves: mean over seeds. AUC: mean ± sd over seeds,\nthen the seed ensemble's with its DeLong CI",
    )
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        aspect="equal",
        title=f"ROC curves, {subset}",
        xlabel="False positive rate (HEM called ALL)",
        ylabel="True positive rate (ALL recall)",
    )
    axes.grid(alpha=0.3)
    return figure


def mean_confusion_counts(runs: Sequence[pd.DataFrame], threshold: float) -> np.ndarray:
    """Mean over seeds of the confusion counts at ``threshold`` (the metrics files' tp, fn, fp, tn), rows the
    truth and columns the call, each in CONFUSION_ORDER (ALL first)."""
    # confusion_counts orders HEM then ALL; reversing both axes puts ALL first.
    return np.mean([confusion_counts(is_all(run), run["p_all"], threshold)[::-1, ::-1] for run in runs], axis=0)


@styled
def plot_confusion_matrices(predictions: Mapping[str, Sequence[pd.DataFrame]], threshold: float) -> Figure:
    """One confusion matrix per model side by side as Fig. 7: mean counts per seed, shaded and
    annotated with the percentage of the true class (so each row's diagonal cell is that class's recall).

    An image is called ALL when ``p_all >= threshold`` (``statistics.threshold``), as in the metrics files;
    the prediction tables' ``pred`` column is the model's argmax and is not used."""
    figure = new_figure(figsize=(4.2 * len(predictions) + 1, 4.2))
    grid = figure.subplots(1, len(predictions), squeeze=False)[0]
    for (model, runs), axes in zip(predictions.items(), grid, strict=True):
        counts = mean_confusion_counts(runs, threshold)
        percent = 100 * counts / counts.sum(axis=1, keepdims=True)
        image = axes.imshow(percent, cmap="Blues", vmin=0, vmax=100)
        count_format = ".0f" if np.allclose(counts, counts.round()) else ".1f"
        for (row, column), share in np.ndenumerate(percent):
            axes.text(
                column,
                row,
                f"{counts[row, column]:{count_format}}\n({share:.1f}%)",
                ha="center",
                va="center",
                color="white" if share > 50 else "black",
                fontsize=11,
            )
        axes.set(
            xticks=range(len(CONFUSION_ORDER)),
            yticks=range(len(CONFUSION_ORDER)),
            xticklabels=CONFUSION_ORDER,
            yticklabels=CONFUSION_ORDER,
            title=f"{model_name(model)}\n(mean counts of {_seeds_text(len(runs))})",
            xlabel=f"Predicted class (ALL at p(ALL) ≥ {threshold:g})",
            ylabel="True class",
        )
    figure.colorbar(image, ax=list(grid), label="% of true class", shrink=0.8)
    return figure


@styled
def plot_reliability_diagram(predictions: Mapping[str, Sequence[pd.DataFrame]]) -> Figure:
    """Reliability of the predicted probability of ALL per model: the curve of all seeds' images pooled,
    ECE and Brier score as mean ± sd over seeds in the legend, and the images per bin below."""
    colours = model_colours(list(predictions))
    figure = new_figure(figsize=(6, 7))
    curve_axes, count_axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    curve_axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="Perfect calibration")
    for model, runs in predictions.items():
        pooled = pd.concat(runs, ignore_index=True)
        curve = reliability_curve(is_all(pooled), pooled["p_all"], CALIBRATION_BINS).query("count > 0")
        ece = [expected_calibration_error(is_all(run), run["p_all"], CALIBRATION_BINS) for run in runs]
        brier = [brier_score(is_all(run), run["p_all"]) for run in runs]
        curve_axes.plot(
            curve["mean_predicted"],
            curve["observed_frequency"],
            marker="o",
            color=colours[model],
            label=f"{model_name(model)}: ECE {_spread_text(ece)}, Brier {_spread_text(brier)}",
        )
        count_axes.plot(curve["bin_center"], curve["count"] / len(runs), marker="o", color=colours[model])
    # Below the axes, the legend never hides a curve, wherever the models' curves run.
    figure.legend(*curve_axes.get_legend_handles_labels(), loc="outside lower center", title="Mean ± sd over seeds")
    # A little room beyond [0, 1] keeps markers at the edges whole.
    curve_axes.set(
        xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title="Reliability diagram", ylabel="Observed frequency of ALL"
    )
    count_axes.set(
        yscale="log",
        xlabel="Predicted probability of ALL",
        ylabel="Images per bin\n(mean per seed)",
    )
    for axes in (curve_axes, count_axes):
        axes.grid(alpha=0.3)
    return figure


# A forest plot's prediction sets by Table 1's "Predictions" label: its marker, filled for plain predictions and
# hollow with test-time augmentation. The seeds' rows show mean ± sd, the ensembles' their bootstrap intervals.
FOREST_MARKERS = {
    SEEDS_SET: ("o", True),
    ENSEMBLE_ROWS: ("s", True),
    TTA_SEEDS_ROWS: ("o", False),
    TTA_ENSEMBLE_ROWS: ("s", False),
}
ENSEMBLE_SETS = (ENSEMBLE_ROWS, TTA_ENSEMBLE_ROWS)
FOREST_COLUMNS = 3
SUBJECT_BAND_WIDTH = 7


def _forest_rows(metrics: PredictionSets, models: Sequence[str], subset: str) -> list[tuple[str, str, list[Mapping]]]:
    """(model, prediction set, its metrics JSONs: the seeds' or the ensemble's one) per row, top to bottom; the
    TTA sets only where there are any."""
    sets = {
        SEEDS_SET: metrics.seeds,
        ENSEMBLE_ROWS: metrics.ensemble,
        TTA_SEEDS_ROWS: metrics.tta_seeds,
        TTA_ENSEMBLE_ROWS: metrics.tta_ensemble,
    }
    rows = []
    for model in models:
        for label, runs in sets.items():
            if label in ENSEMBLE_SETS and runs:
                rows.append((model, label, [_ensemble_run(runs, model, subset, label)]))
            elif runs:
                rows.append((model, label, _seed_runs(runs, model, subset, label)))
    return rows


def _forest_legend(rows, confidence: str, subset: str, subject_band: bool) -> list[Line2D]:
    seeds = max(len(runs) for _, label, runs in rows if label not in ENSEMBLE_SETS)
    grey = "dimgrey"
    handles = [
        Line2D([], [], color=grey, marker="o", label=f"Seeds: mean ± sd over {_seeds_text(seeds)}"),
        Line2D([], [], color=grey, marker="s", label=f"Seed ensemble: value and {confidence} image bootstrap CI"),
    ]
    if subject_band:
        handles.append(
            Line2D(
                [],
                [],
                color=grey,
                linewidth=SUBJECT_BAND_WIDTH,
                alpha=BAND_ALPHA,
                label=f"Seed ensemble: {confidence} subject bootstrap CI",
            )
        )
    if any(label in (TTA_SEEDS_ROWS, TTA_ENSEMBLE_ROWS) for _, label, _ in rows):
        handles.append(
            Line2D([], [], color=grey, marker="o", markerfacecolor="white", linestyle="none", label="Hollow: TTA")
        )
    if subset == PAPER_SUBSET:
        handles.append(Line2D([], [], color="black", linestyle="--", label="The paper's value (its test set)"))
    return handles


@styled
def plot_forest(metrics: PredictionSets, models: Sequence[str], subset: str) -> Figure:
    """Table 1 of one subset as a forest plot: a panel per Table 1 metric, a row per model and prediction set
    (seeds: mean ± sd; seed ensemble: value with its image bootstrap interval and, for ``subset`` among
    ``metrics.subject_ci_subsets`` where not null, its subject bootstrap interval as a band; the same with TTA),
    and on the test subset each model's value in the paper as a dashed line across its rows."""
    rows = _forest_rows(metrics, models, subset)
    ensembles = [runs[0] for _, label, runs in rows if label in ENSEMBLE_SETS]
    confidence = _confidence_text(ensembles, f"the seed ensembles on {subset}")
    with_subject = subset in metrics.subject_ci_subsets
    colours = model_colours(models)
    panel_rows = -(-len(TABLE1_METRICS) // FOREST_COLUMNS)
    figure = new_figure(figsize=(10, panel_rows * (0.27 * len(rows) + 0.9) + 1.2))
    grid = figure.subplots(panel_rows, FOREST_COLUMNS, sharey=True, squeeze=False)
    drew_subject_band = False
    for axes, metric in zip(grid.flat[: len(TABLE1_METRICS)], TABLE1_METRICS, strict=True):
        for y, (model, label, runs) in enumerate(rows):
            marker, filled = FOREST_MARKERS[label]
            style = {
                "marker": marker,
                "color": colours[model],
                "markerfacecolor": colours[model] if filled else "white",
                "capsize": 3,
                "linestyle": "none",
            }
            what = f"the {label} of {model} on {subset}"
            if label in ENSEMBLE_SETS:
                entry = metric_entry(runs[0], metric, f"of {what}", fields=INTERVAL_FIELDS)
                value, low, high = (entry[key] for key in INTERVAL_FIELDS)
                if with_subject and entry.get("subject_ci_low") is not None:
                    axes.hlines(
                        y,
                        entry["subject_ci_low"],
                        entry["subject_ci_high"],
                        colors=colours[model],
                        linewidth=SUBJECT_BAND_WIDTH,
                        alpha=BAND_ALPHA,
                    )
                    drew_subject_band = True
                axes.errorbar(value, y, xerr=[[value - low], [high - value]], **style)
            else:
                mean, sd, _ = mean_sd([metric_entry(run, metric, f"of {what}")["value"] for run in runs])
                axes.errorbar(mean, y, xerr=None if np.isnan(sd) else sd, **style)
        for model in models:
            model_rows = [y for y, row in enumerate(rows) if row[0] == model]
            paper_value = TABLE1[metric].values.get(model)
            if subset == PAPER_SUBSET and paper_value is not None:
                axes.vlines(paper_value, model_rows[0] - 0.4, model_rows[-1] + 0.4, colors="black", linestyles="--")
            if model_rows[0] > 0:
                axes.axhline(model_rows[0] - 0.5, color="lightgrey", linewidth=0.8)
        axes.set_title(METRIC_LABELS[metric])
        axes.grid(axis="x", alpha=0.3)
    for axes in grid.flat[len(TABLE1_METRICS) :]:
        axes.set_visible(False)
    first = grid[0, 0]
    first.set_yticks(range(len(rows)), [f"{model_name(model)} {label}" for model, label, _ in rows])
    first.set_ylim(len(rows) - 0.5, -0.5)
    figure.suptitle(f"Table 1's metrics on {subset}: each model's prediction sets")
    figure.legend(
        handles=_forest_legend(rows, confidence, subset, drew_subject_band),
        loc="outside lower center",
        ncols=2,
    )
    return figure
