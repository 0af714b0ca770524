"""Issue 13, fault 5: a configured decision threshold other than the model's argmax.

With ``statistics.threshold: 0.3`` every thresholded number of a run (metrics files, confusion figures,
McNemar and agreement tables) must call an image ALL at p_all >= 0.3. The prediction tables' ``pred``
column is the model's argmax (ALL at p_all >= 0.5) and must never stand in for that decision.
"""

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import confusion_matrix

from conftest import run_snakemake
from leukemia_dtl.core.decisions import ARGMAX_THRESHOLD, class_calls
from leukemia_dtl.core.fileio import read_json, read_tsv, write_json, write_tsv
from leukemia_dtl.core.vocabulary import PREDICTION_COLUMNS
from leukemia_dtl.evaluate.figures import plot_confusion_matrices, save_figure
from leukemia_dtl.evaluate.metrics import evaluate_prediction_file
from leukemia_dtl.evaluate.result_files import read_predictions

THRESHOLD = 0.3
# Order of the confusion figure's rows (truth) and columns (call), as the paper's Fig. 7 draws them.
ALL_FIRST = ["ALL", "HEM"]


def prediction_table(model_shift: float, seed: int, n_images: int = 60) -> pd.DataFrame:
    """A prediction table as the prediction step writes it: two ALL per HEM, p_all from a logistic score
    shifted towards HEM so that many images fall between 0.3 and 0.5, and ``pred`` the model's argmax."""
    rng = np.random.default_rng(seed)
    labels = np.where(np.arange(n_images) % 3 == 0, "HEM", "ALL")
    p_all = 1 / (1 + np.exp(-(rng.normal(np.where(labels == "ALL", 0.8, -0.8), 1.0) - model_shift)))
    return pd.DataFrame(
        {
            "path": [f"img_{index}.bmp" for index in range(n_images)],
            "subject": [f"subject_{index % 9}" for index in range(n_images)],
            "label": labels,
            "p_all": p_all,
            "pred": class_calls(p_all),
        }
    )[list(PREDICTION_COLUMNS)]


def counts_at(frame: pd.DataFrame, threshold: float) -> np.ndarray:
    """The confusion counts a reader expects at ``threshold``, ALL first, straight from scikit-learn."""
    called = np.where(frame["p_all"] >= threshold, "ALL", "HEM")
    return confusion_matrix(frame["label"], called, labels=ALL_FIRST)


def metrics_counts(metrics: dict) -> np.ndarray:
    return np.array([[metrics["tp"], metrics["fn"]], [metrics["fp"], metrics["tn"]]])


def drawn_counts(figure) -> list[np.ndarray]:
    """The counts written in each confusion matrix of ``figure`` (cell texts "count\\n(percent%)")."""
    matrices = [axes for axes in figure.axes if axes.get_label() != "<colorbar>"]
    return [np.array([float(text.get_text().split("\n")[0]) for text in axes.texts]).reshape(2, 2) for axes in matrices]


@pytest.fixture
def prediction_file(tmp_path):
    frame = prediction_table(model_shift=0.6, seed=3)
    # The fixture is only a test of the threshold if 0.3 and the argmax disagree on some images.
    assert (counts_at(frame, THRESHOLD) != counts_at(frame, ARGMAX_THRESHOLD)).any()
    path = tmp_path / "test.tsv"
    write_tsv(frame, path)
    return path


def test_confusion_figure_draws_the_metrics_files_counts_at_the_configured_threshold(prediction_file, tmp_path):
    metrics_path = tmp_path / "test.json"
    write_json(
        evaluate_prediction_file(prediction_file, THRESHOLD, n_bootstrap=50, seed=0, confidence=0.95), metrics_path
    )
    metrics = read_json(metrics_path)

    figure = plot_confusion_matrices({"vgg19": [read_predictions(prediction_file)]}, THRESHOLD)

    expected = counts_at(read_tsv(prediction_file).astype({"p_all": float}), THRESHOLD)
    np.testing.assert_array_equal(metrics_counts(metrics), expected)
    (drawn,) = drawn_counts(figure)
    np.testing.assert_array_equal(drawn, expected)
    assert metrics["threshold"] == THRESHOLD
    assert "0.3" in figure.axes[0].get_xlabel()


def test_no_evaluation_output_reads_the_pred_column_as_the_decision(prediction_file, tmp_path):
    """The same probabilities with every ``pred`` flipped give the same metrics and figure, at 0.3 and at 0.5."""
    flipped_file = tmp_path / "flipped.tsv"
    frame = read_tsv(prediction_file)
    write_tsv(frame.assign(pred=frame["pred"].map({"ALL": "HEM", "HEM": "ALL"})), flipped_file)
    for threshold in (THRESHOLD, ARGMAX_THRESHOLD):
        original, flipped = (
            evaluate_prediction_file(path, threshold, n_bootstrap=50, seed=0, confidence=0.95)
            for path in (prediction_file, flipped_file)
        )
        assert original == flipped
        drawn_original, drawn_flipped = (
            drawn_counts(plot_confusion_matrices({"vgg19": [read_predictions(path)]}, threshold))
            for path in (prediction_file, flipped_file)
        )
        np.testing.assert_array_equal(drawn_original, drawn_flipped)


@pytest.mark.workflow
def test_a_workflow_run_at_threshold_0_3_uses_it_in_metrics_figures_and_comparisons(tmp_path):
    """The evaluation rules run by Snakemake on prediction files in place, with statistics.threshold 0.3."""
    runs = {
        (model, subset): prediction_table(model_shift, seed=10 * model_number + subset_number)
        for model_number, (model, model_shift) in enumerate((("vgg19", 0.6), ("efficientnetb3", 0.2)))
        for subset_number, subset in enumerate(("val", "test", "external"))
    }
    for (model, subset), frame in runs.items():
        write_tsv(frame, tmp_path / "results" / "predictions" / "random" / model / "seed0" / f"{subset}.tsv")
    overlay = tmp_path / "threshold.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "seeds": [0],
                "split": {"schemes": ["random"]},
                "statistics": {"threshold": THRESHOLD, "bootstrap_resamples": 100},
            }
        )
    )
    results = tmp_path / "results"
    targets = [
        *(f"results/metrics/random/{model}/seed0/test.json" for model in ("vgg19", "efficientnetb3")),
        "results/figures/random/confusion_test.png",
        "results/stats/random/mcnemar.tsv",
    ]
    result = run_snakemake(
        "--cores",
        "2",
        "--configfile",
        "config/demo.yaml",
        str(overlay),
        # Only the evaluation rules: the prediction files above stand in for the model stage.
        "--allowed-rules",
        "evaluate_predictions",
        "ensemble_predictions",
        "plot_subset_figures",
        "compare_models",
        "--",
        *targets,
        workdir=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    test_runs = {model: runs[model, "test"] for model in ("vgg19", "efficientnetb3")}
    for model, frame in test_runs.items():
        metrics = read_json(results / "metrics" / "random" / model / "seed0" / "test.json")
        np.testing.assert_array_equal(metrics_counts(metrics), counts_at(frame, THRESHOLD))

    # The workflow's figure is, byte for byte, the one whose drawn counts equal the metrics files' at 0.3.
    reference = plot_confusion_matrices({model: [frame] for model, frame in test_runs.items()}, THRESHOLD)
    np.testing.assert_array_equal(
        drawn_counts(reference), [counts_at(frame, THRESHOLD) for frame in test_runs.values()]
    )
    save_figure(reference, tmp_path / "reference.png", tmp_path / "reference.pdf")
    assert (results / "figures" / "random" / "confusion_test.png").read_bytes() == (
        tmp_path / "reference.png"
    ).read_bytes()

    # McNemar's discordant pairs: images only one model gets right, with calls at 0.3.
    correct = {model: (frame["p_all"] >= THRESHOLD) == (frame["label"] == "ALL") for model, frame in test_runs.items()}
    mcnemar = read_tsv(results / "stats" / "random" / "mcnemar.tsv").query("subset == 'test'")
    assert (int(mcnemar["b"].iloc[0]), int(mcnemar["c"].iloc[0])) == (
        int((correct["vgg19"] & ~correct["efficientnetb3"]).sum()),
        int((~correct["vgg19"] & correct["efficientnetb3"]).sum()),
    )
