"""The paper-style figures: each draws the numbers of the metrics files and prediction tables it is given."""

import numpy as np
import pandas as pd
import pytest

from evaluation_results import MODELS, SEEDS, synthetic_predictions
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.run_paths import SET_PREDICTIONS, in_set
from leukemia_dtl.core.vocabulary import PLAIN, PREDICTED_SUBSETS, TTA
from leukemia_dtl.evaluate.calibration import brier_score, expected_calibration_error
from leukemia_dtl.evaluate.ensemble import write_seed_ensembles
from leukemia_dtl.evaluate.figure_style import model_colours, save_figure
from leukemia_dtl.evaluate.figures import (
    SUBJECT_BAND_WIDTH,
    plot_confusion_matrices,
    plot_forest,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_training_curves,
)
from leukemia_dtl.evaluate.metrics import evaluate_prediction_set
from leukemia_dtl.evaluate.paper_values import TABLE1
from leukemia_dtl.evaluate.result_files import is_all, read_predictions, read_training_history
from leukemia_dtl.evaluate.table1 import PredictionSets

EPOCHS = 12
# Not the default 0.95: every interval a figure shows must be at the configured level.
CONFIDENCE = 0.9


def synthetic_history(seed: int) -> pd.DataFrame:
    """A history.tsv of the training step: accuracy rising, loss falling, validation a little worse."""
    rng = np.random.default_rng(seed)
    epoch = np.arange(1, EPOCHS + 1)
    accuracy = 1 - 0.4 * np.exp(-epoch / 4) - rng.uniform(0, 0.02, EPOCHS)
    loss = 0.7 * np.exp(-epoch / 4) + rng.uniform(0, 0.02, EPOCHS)
    return pd.DataFrame(
        {
            "epoch": epoch,
            "loss": loss,
            "accuracy": accuracy,
            "val_loss": loss + 0.05,
            "val_accuracy": accuracy - 0.05,
            "epoch_seconds": 10.0,
            "train_seconds": 9.0,
        }
    )


@pytest.fixture(scope="module")
def predictions():
    return {model: [synthetic_predictions(model, seed) for seed in SEEDS] for model in MODELS}


@pytest.fixture(scope="module")
def histories(tmp_path_factory):
    folder = tmp_path_factory.mktemp("histories")
    runs = {}
    for model in MODELS:
        for seed in SEEDS:
            write_tsv(synthetic_history(seed), folder / f"{model}_{seed}.tsv")
        runs[model] = [read_training_history(folder / f"{model}_{seed}.tsv") for seed in SEEDS]
    return runs


def _evaluate(prediction_files) -> dict:
    """The metrics files of one prediction set, as evaluate_predictions writes them, at CONFIDENCE."""
    return evaluate_prediction_set(prediction_files, threshold=0.5, n_bootstrap=50, seed=0, confidence=CONFIDENCE)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Each model's seeds, seed ensemble and both with TTA, as the workflow predicts and evaluates them: the seeds'
    test predictions ({model: [frame per seed]}) and the metrics of every set and subset (PredictionSets)."""
    folder = tmp_path_factory.mktemp("prediction_sets")
    test_predictions = {model: [] for model in MODELS}
    sets = {name: {} for name in ("seeds", "ensemble", "tta_seeds", "tta_ensemble")}
    for model in MODELS:
        for kind, tta_offset in (("", 0), ("tta_", 100)):
            seed_files = {subset: [] for subset in PREDICTED_SUBSETS}
            for seed in SEEDS:
                files = {}
                for offset, subset in enumerate(PREDICTED_SUBSETS):
                    # At the workflow's path, which names the seed that write_seed_ensembles keys the files by.
                    prediction_kind = TTA if kind else PLAIN
                    path = in_set(SET_PREDICTIONS, prediction_kind, seed).format(
                        scheme="random", model=model, subset=subset
                    )
                    files[subset] = folder / path
                    write_tsv(synthetic_predictions(model, tta_offset + 10 * seed + offset), files[subset])
                    seed_files[subset].append(files[subset])
                for subset, metrics in _evaluate(files).items():
                    sets[f"{kind}seeds"][model, seed, subset] = metrics
                if not kind:
                    test_predictions[model].append(read_predictions(files["test"]))
            ensemble_files = {subset: folder / f"{model}_{kind}ensemble_{subset}.tsv" for subset in PREDICTED_SUBSETS}
            write_seed_ensembles(seed_files, ensemble_files)
            for subset, metrics in _evaluate(ensemble_files).items():
                sets[f"{kind}ensemble"][model, subset] = metrics
    return test_predictions, PredictionSets(**sets, subject_ci_subsets=["test", "external"])


def _axis_labels(figure):
    return {(axes.get_xlabel(), axes.get_ylabel()) for axes in figure.axes if axes.get_label() != "<colorbar>"}


def _legend_texts(axes):
    return [text.get_text() for text in axes.get_legend().get_texts()]


def _assert_saves(figure, folder, name):
    save_figure(figure, folder / f"{name}.png", folder / f"{name}.pdf")
    assert (folder / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert (folder / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(path.name for path in folder.iterdir() if path.name.startswith(name)) == [
        f"{name}.pdf",
        f"{name}.png",
    ]


def _assert_readable_text(figure):
    sizes = [text.get_fontsize() for text in figure.findobj(lambda artist: hasattr(artist, "get_fontsize"))]
    assert min(sizes) >= 9


def test_training_curves(tmp_path, histories):
    figure = plot_training_curves(histories)
    assert len(figure.axes) == 2 * len(MODELS)
    assert [(axes.get_xlabel(), axes.get_ylabel()) for axes in figure.axes[-2:]] == [
        ("Epoch", "Accuracy (argmax)"),
        ("Epoch", "Loss"),
    ]
    first = figure.axes[0]
    assert first.get_title() == "(a) VGG-19: accuracy"
    assert _legend_texts(first) == ["Training", "Validation", "Min–max over seeds"]
    # The plotted line is the mean over seeds.
    expected = np.mean([history["accuracy"] for history in histories["vgg19"]], axis=0)
    assert first.get_lines()[0].get_ydata() == pytest.approx(expected)
    assert first.get_lines()[0].get_color() == model_colours(MODELS)["vgg19"]
    _assert_saves(figure, tmp_path, "training_curves")
    _assert_readable_text(figure)


def test_read_training_history_names_a_bad_file(tmp_path):
    write_tsv(synthetic_history(1).drop(columns="val_loss"), tmp_path / "history.tsv")
    with pytest.raises(UserError, match=r"history\.tsv lacks column.*val_loss"):
        read_training_history(tmp_path / "history.tsv")


def _figure_legend_texts(figure):
    (legend,) = figure.legends
    return [legend.get_title().get_text()] + [text.get_text() for text in legend.get_texts()]


def test_roc_curves(tmp_path, evaluated):
    predictions, sets = evaluated
    figure = plot_roc_curves(predictions, sets, "test")
    (axes,) = figure.axes
    assert (axes.get_xlabel(), axes.get_ylabel()) == (
        "False positive rate (HEM called ALL)",
        "True positive rate (ALL recall)",
    )
    assert axes.get_title() == "ROC curves, test"
    legend = _figure_legend_texts(figure)[1:]
    assert legend[0] == "Chance"
    assert legend[1].startswith("VGG-19: AUC ")
    assert legend[2].startswith("VGG-19: at the validation threshold chosen on val")
    assert legend[3].startswith("EfficientNet-B3: AUC ")
    assert legend[-1] == "Single seeds"
    _assert_saves(figure, tmp_path, "roc")
    _assert_readable_text(figure)


def test_roc_legend_shows_the_metrics_files_seed_spread_and_ensemble_delong_interval(evaluated):
    """With statistics.confidence 0.9 the legend's interval is the ensemble file's 90% DeLong interval, its AUC
    spread the seeds' files', and no 95% appears anywhere."""
    predictions, sets = evaluated
    legend = _figure_legend_texts(plot_roc_curves(predictions, sets, "test"))
    for model, name in (("vgg19", "VGG-19"), ("efficientnetb3", "EfficientNet-B3")):
        ensemble = sets.ensemble[model, "test"]
        assert ensemble["confidence"] == CONFIDENCE
        delong = ensemble["roc_auc_delong"]
        aucs = [sets.seeds[model, seed, "test"]["roc_auc"]["value"] for seed in SEEDS]
        assert (
            f"{name}: AUC {np.mean(aucs):.3f} ± {np.std(aucs, ddof=1):.3f} over 3 seeds;\n"
            + (f"ensemble {delong['value']:.3f}, 90% DeLong CI {delong['ci_low']:.3f}–{delong['ci_high']:.3f}")
            in legend
        )
    assert not any("95%" in text for text in legend)


def test_roc_marks_each_models_operating_point_at_its_validation_thresholds(evaluated):
    """The marked point is the seeds' mean (1 - specificity, ALL recall) at the thresholds chosen on val, as
    Table 1's validation-threshold rows; nothing on the figure is chosen on the test labels."""
    predictions, sets = evaluated
    figure = plot_roc_curves(predictions, sets, "test")
    points = {line.get_label(): line for line in figure.axes[0].get_lines() if line.get_marker() == "o"}
    assert len(points) == len(MODELS)
    for model, name in (("vgg19", "VGG-19"), ("efficientnetb3", "EfficientNet-B3")):
        at_validation = [sets.seeds[model, seed, "test"]["at_validation_threshold"] for seed in SEEDS]
        fpr = np.mean([1 - run["specificity"]["value"] for run in at_validation])
        tpr = np.mean([run["recall_all"]["value"] for run in at_validation])
        label = f"{name}: at the validation threshold chosen on val\n(seeds' mean FPR {fpr:.3f}, TPR {tpr:.3f})"
        assert (points[label].get_xdata(), points[label].get_ydata()) == (pytest.approx([fpr]), pytest.approx([tpr]))
    assert not any("youden" in text.lower() for text in _figure_legend_texts(figure))


def test_roc_needs_both_classes(evaluated):
    predictions, sets = evaluated
    only_all = predictions["vgg19"][0].query("label == 'ALL'")
    with pytest.raises(UserError, match="only ALL images"):
        plot_roc_curves({"vgg19": [only_all]}, sets, "test")


def test_roc_names_metrics_without_the_validation_threshold(evaluated):
    predictions, sets = evaluated
    outdated = dict(sets.seeds)
    outdated["vgg19", 1, "test"] = {
        key: entry for key, entry in outdated["vgg19", 1, "test"].items() if key != "at_validation_threshold"
    }
    with pytest.raises(UserError, match=r"of vgg19 on test has no value for 'specificity' under 'at_validation_th"):
        plot_roc_curves(predictions, PredictionSets(seeds=outdated, ensemble=sets.ensemble), "test")
    with pytest.raises(UserError, match=r"No ensemble metrics for vgg19 on test"):
        plot_roc_curves(predictions, PredictionSets(seeds=sets.seeds, ensemble={}), "test")


def _forest_panels(figure):
    return [axes for axes in figure.axes if axes.get_visible()]


def _errorbar(axes, row: int) -> tuple[float, float, float]:
    """(point, bar's left end, bar's right end) drawn on the forest panel's ``row``."""
    container = axes.containers[row]
    data_line, _, (bar,) = container.lines
    ((low, _), (high, _)), *_ = bar.get_segments()
    return data_line.get_xdata()[0], low, high


def _collections_of_width(axes, width):
    return [collection for collection in axes.collections if collection.get_linewidth()[0] == width]


def test_forest_plot_draws_each_prediction_set_with_its_intervals_and_the_paper(tmp_path, evaluated):
    _, sets = evaluated
    figure = plot_forest(sets, MODELS, "test")
    panels = _forest_panels(figure)
    assert [axes.get_title() for axes in panels] == [row.label for row in TABLE1.values()]
    rows = ["seeds", "ensemble", "TTA seeds", "TTA ensemble"]
    assert [label.get_text() for label in panels[0].get_yticklabels()] == [
        f"{name} {row}" for name in ("VGG-19", "EfficientNet-B3") for row in rows
    ]
    accuracy, auc = panels[0], panels[-2]
    seeds = [sets.seeds["vgg19", seed, "test"]["accuracy"]["value"] for seed in SEEDS]
    mean, sd = np.mean(seeds), np.std(seeds, ddof=1)
    assert _errorbar(accuracy, 0) == pytest.approx((mean, mean - sd, mean + sd))
    ensemble = sets.tta_ensemble["efficientnetb3", "test"]["roc_auc"]
    assert _errorbar(auc, 7) == pytest.approx((ensemble["value"], ensemble["ci_low"], ensemble["ci_high"]))
    # The subject interval of each ensemble as a band on its row.
    bands = [segment for band in _collections_of_width(auc, SUBJECT_BAND_WIDTH) for segment in band.get_segments()]
    assert len(bands) == 2 * len(MODELS)
    assert [tuple(point) for point in bands[-1]] == [(ensemble["subject_ci_low"], 7), (ensemble["subject_ci_high"], 7)]
    # The paper's test value of each model, across that model's rows.
    paper = [tuple(map(tuple, segment)) for line in accuracy.collections for segment in line.get_segments()]
    assert ((0.80, -0.4), (0.80, 3.4)) in paper and ((0.96, 3.6), (0.96, 7.4)) in paper
    legend = _figure_legend_texts(figure)
    assert "Seed ensemble: value and 90% image bootstrap CI" in legend
    assert "Seed ensemble: 90% subject bootstrap CI" in legend
    assert "The paper's value (its test set)" in legend
    assert not any("95%" in text for text in legend)
    _assert_saves(figure, tmp_path, "forest_test")
    _assert_readable_text(figure)


def _without_subject_bounds(metrics):
    """A metrics file of a set with too few subjects of a class: every subject bound null."""
    return {
        key: {**entry, "subject_ci_low": None, "subject_ci_high": None} if isinstance(entry, dict) else entry
        for key, entry in metrics.items()
    }


def test_forest_plot_without_tta_the_paper_or_null_subject_intervals(evaluated):
    """External images: no paper value; TTA rows only when given; subject bands only where Table 1 shows subject
    intervals and the bounds are not null."""
    _, sets = evaluated
    ensemble = dict(sets.ensemble)
    ensemble["vgg19", "external"] = _without_subject_bounds(ensemble["vgg19", "external"])
    figure = plot_forest(
        PredictionSets(seeds=sets.seeds, ensemble=ensemble, subject_ci_subsets=["external"]), MODELS, "external"
    )
    panels = _forest_panels(figure)
    assert [label.get_text() for label in panels[0].get_yticklabels()] == [
        "VGG-19 seeds",
        "VGG-19 ensemble",
        "EfficientNet-B3 seeds",
        "EfficientNet-B3 ensemble",
    ]
    for axes in panels:
        (band,) = _collections_of_width(axes, SUBJECT_BAND_WIDTH)
        assert [y for (_, y), _ in band.get_segments()] == [3]
    legend = _figure_legend_texts(figure)
    assert "Seed ensemble: 90% subject bootstrap CI" in legend
    assert not any("paper" in text for text in legend)
    hidden = plot_forest(PredictionSets(seeds=sets.seeds, ensemble=sets.ensemble), MODELS, "external")
    assert not any(_collections_of_width(axes, SUBJECT_BAND_WIDTH) for axes in _forest_panels(hidden))
    assert not any("subject" in text for text in _figure_legend_texts(hidden))


def test_forest_plot_refuses_intervals_of_two_confidence_levels(evaluated):
    _, sets = evaluated
    mixed = dict(sets.ensemble)
    mixed["vgg19", "test"] = {**mixed["vgg19", "test"], "confidence": 0.95}
    with pytest.raises(UserError, match=r"2 confidence levels \(90%, 95%\)"):
        plot_forest(PredictionSets(seeds=sets.seeds, ensemble=mixed), MODELS, "test")


def test_confusion_matrices_show_mean_counts_and_row_percentages(tmp_path, predictions):
    figure = plot_confusion_matrices(predictions, threshold=0.5)
    matrices = [axes for axes in figure.axes if axes.get_label() != "<colorbar>"]
    assert len(matrices) == len(MODELS)
    assert _axis_labels(figure) == {("Predicted class (ALL at p(ALL) ≥ 0.5)", "True class")}
    runs = predictions["vgg19"]
    true_all = np.mean([(run["label"] == "ALL").sum() for run in runs])
    called_all = np.mean([((run["label"] == "ALL") & (run["p_all"] >= 0.5)).sum() for run in runs])
    top_left = matrices[0].texts[0].get_text()
    assert top_left.startswith((f"{called_all:.1f}\n", f"{called_all:.0f}\n"))
    assert top_left.endswith(f"({100 * called_all / true_all:.1f}%)")
    _assert_saves(figure, tmp_path, "confusion")
    _assert_readable_text(figure)


def _known_calibration_seeds() -> list[pd.DataFrame]:
    """Two seeds' predictions whose pooled reliability bins are worked out by hand below."""
    seeds = [
        ([0.05, 0.15, 0.95, 0.95], ["HEM", "ALL", "ALL", "HEM"]),
        ([0.05, 0.12, 0.85, 0.95], ["HEM", "HEM", "ALL", "ALL"]),
    ]
    return [
        pd.DataFrame(
            {
                "path": [f"seed{seed}_{image}.bmp" for image in range(len(p_all))],
                "subject": "UID_1",
                "label": labels,
                "p_all": p_all,
                "pred": ["ALL" if p >= 0.5 else "HEM" for p in p_all],
            }
        )
        for seed, (p_all, labels) in enumerate(seeds)
    ]


def test_reliability_diagram_draws_the_pooled_seeds_bins_and_the_images_per_bin(tmp_path):
    runs = _known_calibration_seeds()
    figure = plot_reliability_diagram({"vgg19": runs})
    curve_axes, count_axes = figure.axes
    diagonal, curve = curve_axes.get_lines()
    assert (list(diagonal.get_xdata()), list(diagonal.get_ydata())) == ([0, 1], [0, 1])
    # The occupied bins (0, 0.1], (0.1, 0.2], (0.8, 0.9] and (0.9, 1] of both seeds' 8 images: the mean p_all and
    # the share of ALL of each bin's images; the empty bins are left out.
    assert list(curve.get_xdata()) == pytest.approx([0.05, 0.135, 0.85, 0.95])
    assert list(curve.get_ydata()) == pytest.approx([0.0, 0.5, 1.0, 2 / 3])
    (counts,) = count_axes.get_lines()
    assert list(counts.get_xdata()) == pytest.approx([0.05, 0.15, 0.85, 0.95])
    assert list(counts.get_ydata()) == pytest.approx([1.0, 1.0, 0.5, 1.5])  # images per bin, mean per seed
    ece = [expected_calibration_error(is_all(run), run["p_all"]) for run in runs]
    brier = [brier_score(is_all(run), run["p_all"]) for run in runs]
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == [
        "Perfect calibration",
        f"VGG-19: ECE {np.mean(ece):.3f} ± {np.std(ece, ddof=1):.3f}, "
        f"Brier {np.mean(brier):.3f} ± {np.std(brier, ddof=1):.3f}",
    ]
    assert (curve_axes.get_ylabel(), count_axes.get_xlabel()) == (
        "Observed frequency of ALL",
        "Predicted probability of ALL",
    )
    _assert_saves(figure, tmp_path, "reliability")
    _assert_readable_text(figure)
