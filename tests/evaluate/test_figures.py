import numpy as np
import pandas as pd
import pytest
from test_tables import MODELS, SEEDS, synthetic_predictions

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.evaluate.figures import (
    STYLE,
    model_colours,
    plot_confusion_matrices,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_training_curves,
    save_figure,
)
from leukemia_dtl.evaluate.metrics import classification_metrics
from leukemia_dtl.evaluate.result_files import read_training_history

EPOCHS = 12


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


def test_roc_curves(tmp_path, predictions):
    figure = plot_roc_curves(predictions, "patient-level test set")
    (axes,) = figure.axes
    assert (axes.get_xlabel(), axes.get_ylabel()) == (
        "False positive rate (HEM called ALL)",
        "True positive rate (ALL recall)",
    )
    assert axes.get_title() == "ROC curves, patient-level test set"
    legend = _legend_texts(axes)
    assert legend[0] == "Chance"
    assert legend[1].startswith("VGG-19: AUC ") and "(95% CI " in legend[1]
    assert legend[2].startswith("VGG-19: Youden point, threshold ")
    assert legend[3].startswith("EfficientNet-B3: AUC ")
    assert legend[-1] == "Single seeds"
    _assert_saves(figure, tmp_path, "roc")
    _assert_readable_text(figure)


def test_roc_of_one_seed_matches_its_metrics(predictions):
    run = predictions["efficientnetb3"][0]
    metrics = classification_metrics(run["label"] == "ALL", run["p_all"], n_bootstrap=10)
    figure = plot_roc_curves({"efficientnetb3": [run]}, "test")
    auc, youden = _legend_texts(figure.axes[0])[1:]
    delong = metrics["roc_auc_delong"]
    assert auc == (
        f"EfficientNet-B3: AUC {delong['value']:.3f} (95% CI {delong['ci_low']:.3f}–{delong['ci_high']:.3f})"
    )
    assert youden == f"EfficientNet-B3: Youden point, threshold {metrics['youden_threshold']:.2f}"


def test_roc_needs_both_classes(predictions):
    only_all = predictions["vgg19"][0].query("label == 'ALL'")
    with pytest.raises(UserError, match="only ALL images"):
        plot_roc_curves({"vgg19": [only_all]}, "test")


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


def test_reliability_diagram(tmp_path, predictions):
    figure = plot_reliability_diagram(predictions)
    curve_axes, count_axes = figure.axes
    assert curve_axes.get_ylabel() == "Observed frequency of ALL"
    assert count_axes.get_xlabel() == "Predicted probability of ALL"
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend[0] == "Perfect calibration"
    assert legend[1].startswith("VGG-19: ECE ") and ", Brier " in legend[1]
    _assert_saves(figure, tmp_path, "reliability")
    _assert_readable_text(figure)


def test_models_keep_their_colours_whatever_else_is_plotted():
    assert model_colours(["efficientnetb3", "vgg19"]) == {
        "vgg19": model_colours(["vgg19"])["vgg19"],
        "efficientnetb3": model_colours(["efficientnetb3"])["efficientnetb3"],
    }
    colours = model_colours(["resnet50", "vgg19", "densenet121"])
    assert len(set(colours.values())) == 3
    assert STYLE["legend.fontsize"] >= 9
