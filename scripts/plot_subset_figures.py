"""Rule plot_subset_figures: ROC curves, confusion matrices and reliability diagram of one subset.

input: predictions and metrics (each seed's files of the subset, in run_keys order), ensemble_metrics (each
model's seed ensemble's metrics file of the subset, in ensemble_keys order): the ROC legend's numbers and operating
points are the metrics files'.
params: run_keys ((model, seed, subset) of each seed's files), ensemble_keys ((model, subset) of each ensemble's
file), threshold (p_all at or above which the confusion matrices call an image ALL: statistics.threshold, as the
metrics files use it).
"""

from collections import defaultdict

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.figures import (
    plot_confusion_matrices,
    plot_reliability_diagram,
    plot_roc_curves,
    save_figure,
)
from leukemia_dtl.evaluate.result_files import read_keyed_metrics, read_predictions
from leukemia_dtl.evaluate.tables import PredictionSets


def main(snakemake):
    params, inputs, output, subset = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards.subset
    predictions = defaultdict(list)
    for (model, _seed, _subset), path in zip(params.run_keys, inputs.predictions, strict=True):
        predictions[model].append(read_predictions(path))
    predictions = dict(predictions)
    metrics = PredictionSets(
        seeds=read_keyed_metrics(params.run_keys, inputs.metrics),
        ensemble=read_keyed_metrics(params.ensemble_keys, inputs.ensemble_metrics),
    )
    save_figure(plot_roc_curves(predictions, metrics, subset), output.roc_png, output.roc_pdf)
    confusion = plot_confusion_matrices(predictions, params.threshold)
    save_figure(confusion, output.confusion_png, output.confusion_pdf)
    save_figure(plot_reliability_diagram(predictions), output.reliability_png, output.reliability_pdf)


run_rule(snakemake, main)
