"""Paper-style figures: training curves (Figs 4-5), ROC curves (Fig. 6), confusion matrices (Fig. 7) and
reliability diagrams, summarising every seed of each model.

Plot functions take ``{model: [one frame per seed]}`` and return a matplotlib Figure, drawn with the Agg
canvas and no pyplot state; :func:`save_figure` writes it as PNG and PDF. Prediction frames are those
of :func:`result_files.read_predictions`; histories those of :func:`result_files.read_training_history`.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from scipy.stats import norm

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import atomic_path
from leukemia_dtl.core.vocabulary import CLASS_NAMES, EFFICIENTNETB3, VGG19
from leukemia_dtl.evaluate.calibration import brier_score, expected_calibration_error, reliability_curve
from leukemia_dtl.evaluate.delong import delong_auc_variance
from leukemia_dtl.evaluate.metrics import confusion_counts
from leukemia_dtl.evaluate.paper_values import model_name
from leukemia_dtl.evaluate.result_files import is_all
from leukemia_dtl.evaluate.tables import mean_sd, mean_sd_text

# Confusion matrices list ALL first, as the paper's Fig. 7 does.
CONFUSION_ORDER = CLASS_NAMES[::-1]
# Print-readable text: nothing below 9 pt; TrueType fonts keep the PDF's text editable.
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "pdf.fonttype": 42,
}
# Okabe & Ito's colour-blind-safe palette; the paper's models keep theirs whatever else is plotted.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
PAPER_MODEL_COLOURS = {VGG19: OKABE_ITO[0], EFFICIENTNETB3: OKABE_ITO[1]}
BAND_ALPHA = 0.2
SEED_LINE_ALPHA = 0.4
ROC_MAX_THRESHOLDS = 2001
CALIBRATION_BINS = 10
# Training curves' y axes; accuracy is the training loop's, at the argmax whatever statistics.threshold says.
TRAINING_CURVE_LABELS = {"accuracy": "Accuracy (argmax)", "loss": "Loss"}


def styled(plot):
    """Build the figure under STYLE, so its text sizes hold wherever it is saved."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return plot(*args, **kwargs)

    return wrapper


def new_figure(**figure_options) -> Figure:
    """A figure of its own canvas, outside pyplot's global state (the model stage's Grad-CAM panel uses it too)."""
    figure = Figure(layout="constrained", **figure_options)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, png_path: str | os.PathLike, pdf_path: str | os.PathLike) -> None:
    """Write ``figure`` as a 300 dpi PNG and a PDF, each atomically."""
    with matplotlib.rc_context(STYLE):
        for path, file_format in ((png_path, "png"), (pdf_path, "pdf")):
            with atomic_path(path) as tmp:
                # No creation date in the PDF: the same results give the same file.
                metadata = {"CreationDate": None} if file_format == "pdf" else {}
                # bbox_inches="tight": constrained layout can clip titles above fixed-aspect axes.
                figure.savefig(
                    tmp, format=file_format, dpi=300, metadata=metadata, bbox_inches="tight", pad_inches=0.05
                )


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """One colour per model: the paper's models fixed, others from the rest of the palette in order."""
    spare = itertools.cycle([colour for colour in OKABE_ITO if colour not in PAPER_MODEL_COLOURS.values()])
    return {model: PAPER_MODEL_COLOURS.get(model) or next(spare) for model in models}


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


def _auc_with_delong_ci(y_true: np.ndarray, p_all: np.ndarray) -> tuple[float, float, float]:
    auc, variance = delong_auc_variance(y_true, p_all)
    half_width = norm.ppf(0.975) * np.sqrt(variance)
    return auc, max(0.0, auc - half_width), min(1.0, auc + half_width)


@styled
def plot_roc_curves(predictions: Mapping[str, Sequence[pd.DataFrame]], subset_label: str) -> Figure:
    """ROC per model as Fig. 6, threshold-averaged over seeds (mean FPR and TPR at each threshold, so the
    marked Youden point, maximising mean TPR - FPR, has a threshold), each seed's curve thin behind it.
    Legend AUC: mean ± sd over seeds, with the per-seed DeLong 95 % CI bounds averaged."""
    colours = model_colours(list(predictions))
    figure = new_figure(figsize=(6, 6))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="Chance")
    for model, runs in predictions.items():
        truths = [_labels_of_both_classes(run, model) for run in runs]
        scores = [run["p_all"].to_numpy(dtype=float) for run in runs]
        thresholds = _roc_thresholds(np.concatenate(scores))
        rates = np.array([_rates_at(thresholds, y_true, p_all) for y_true, p_all in zip(truths, scores, strict=True)])
        aucs = pd.DataFrame(
            [_auc_with_delong_ci(y_true, p_all) for y_true, p_all in zip(truths, scores, strict=True)],
            columns=["auc", "ci_low", "ci_high"],
        )
        if len(runs) > 1:
            for fpr, tpr in rates:
                axes.plot(fpr, tpr, color=colours[model], linewidth=0.7, alpha=SEED_LINE_ALPHA)
        mean_fpr, mean_tpr = rates.mean(axis=0)
        label = (
            f"{model_name(model)}: AUC {_spread_text(aucs['auc'])} "
            f"(95% CI {aucs['ci_low'].mean():.3f}–{aucs['ci_high'].mean():.3f})"
        )
        axes.plot(mean_fpr, mean_tpr, color=colours[model], linewidth=2, label=label)
        best = np.argmax(mean_tpr - mean_fpr)
        axes.plot(
            mean_fpr[best],
            mean_tpr[best],
            marker="o",
            markersize=8,
            markeredgecolor="black",
            color=colours[model],
            linestyle="none",
            label=f"{model_name(model)}: Youden point, threshold {thresholds[best]:.2f}",
        )
    handles, _ = axes.get_legend_handles_labels()
    if any(len(runs) > 1 for runs in predictions.values()):
        handles.append(Line2D([], [], color="grey", linewidth=0.7, alpha=SEED_LINE_ALPHA, label="Single seeds"))
    axes.legend(
        handles=handles,
        loc="lower right",
        title="Mean over seeds; AUC mean ± sd,\nper-seed DeLong 95% CI averaged",
    )
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        aspect="equal",
        title=f"ROC curves, {subset_label}",
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


def _axis_combinations(ranking: pd.DataFrame, axes: Sequence[str]) -> list[tuple]:
    """Value combinations of ``axes`` in grid order (each axis's values in the order the grid gave them)."""
    if not axes:
        return [()]
    values = [list(dict.fromkeys(ranking.sort_values("grid_order")[axis])) for axis in axes]
    return list(itertools.product(*values))


def _grid_point_label(names: Sequence[str], values: tuple) -> str:
    return "\n".join(f"{name}={value}" for name, value in zip(names, values, strict=True))


@styled
def plot_tuning_heatmap(ranking: pd.DataFrame, axes: Sequence[str], metric: str) -> Figure:
    """The grid as one heat map of ``metric``: rows combine the first half of ``axes``, columns the rest;
    the selected configuration (rank 1) is outlined."""
    row_axes, column_axes = list(axes[: (len(axes) + 1) // 2]), list(axes[(len(axes) + 1) // 2 :])
    rows, columns = _axis_combinations(ranking, row_axes), _axis_combinations(ranking, column_axes)
    scores = np.full((len(rows), len(columns)), np.nan)
    for _, result in ranking.iterrows():
        row = rows.index(tuple(result[axis] for axis in row_axes))
        column = columns.index(tuple(result[axis] for axis in column_axes))
        scores[row, column] = result[metric]
        if result["rank"] == 1:
            best = (row, column)
    figure = new_figure(figsize=(1.1 * len(columns) + 3, 0.45 * len(rows) * max(1, len(row_axes)) + 2))
    plot = figure.subplots()
    image = plot.imshow(scores, cmap="viridis_r" if metric == "val_loss" else "viridis", aspect="auto")
    for (row, column), score in np.ndenumerate(scores):
        if np.isfinite(score):
            # viridis is light at its top end: dark text there, light text elsewhere.
            light_cell = image.norm(score) > 0.6 if metric != "val_loss" else image.norm(score) < 0.4
            plot.text(
                column,
                row,
                f"{score:.3f}",
                ha="center",
                va="center",
                fontsize=9,
                color="black" if light_cell else "white",
            )
    plot.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor=OKABE_ITO[1], linewidth=2.5))
    plot.set(
        xticks=range(len(columns)),
        yticks=range(len(rows)),
        xticklabels=[_grid_point_label(column_axes, combination) for combination in columns],
        yticklabels=[_grid_point_label(row_axes, combination) for combination in rows],
        title=f"{model_name(ranking['model'].iloc[0])}: {metric} of {len(ranking)} configurations (best outlined)",
    )
    figure.colorbar(image, ax=plot, label=metric, shrink=0.8)
    return figure
