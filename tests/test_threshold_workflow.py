"""A configured decision threshold other than the model's argmax (issue #13, fault 5), through the workflow:
the evaluation rules run by Snakemake at ``statistics.threshold: 0.3``.

Every thresholded number of a run (metrics files, confusion figures, McNemar and agreement tables) must call
an image ALL at p_all >= 0.3; the prediction tables' ``pred`` column (the model's argmax, ALL at p_all >= 0.5)
must never stand in for that decision. The functions behind it are unit-tested in
tests/evaluate/test_figures_threshold.py.
"""

import numpy as np
import pytest
import yaml

from conftest import run_snakemake
from leukemia_dtl.core.fileio import read_json, read_tsv, write_tsv
from leukemia_dtl.evaluate.figure_style import save_figure
from leukemia_dtl.evaluate.figures import plot_confusion_matrices
from threshold_predictions import THRESHOLD, counts_at, drawn_counts, metrics_counts, prediction_table


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
