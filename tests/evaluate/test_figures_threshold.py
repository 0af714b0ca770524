"""A configured decision threshold other than the model's argmax (issue #13, fault 5), in the confusion figure
(evaluate/figures.py) and the metrics files it must agree with (evaluate/metrics.py).

With ``statistics.threshold: 0.3`` every thresholded number must call an image ALL at p_all >= 0.3. The
prediction tables' ``pred`` column is the model's argmax (ALL at p_all >= 0.5) and must never stand in for
that decision. A whole workflow run at 0.3 is tests/test_threshold_workflow.py. Beside test_figures.py.
"""

import numpy as np
import pytest

from leukemia_dtl.core.decisions import ARGMAX_THRESHOLD
from leukemia_dtl.core.fileio import read_json, read_tsv, write_json, write_tsv
from leukemia_dtl.evaluate.figures import plot_confusion_matrices
from leukemia_dtl.evaluate.metrics import evaluate_prediction_file
from leukemia_dtl.evaluate.result_files import read_predictions
from threshold_predictions import THRESHOLD, counts_at, drawn_counts, metrics_counts, prediction_table


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
