"""Rule plot_subset_figures: ROC curves, confusion matrices and reliability diagram of one subset.

input: predictions and metrics (each seed's files of the subset), ensemble_metrics (each model's seed ensemble's
metrics file of the subset): the ROC legend's numbers and operating points are the metrics files'. Each file's
model, seed and subset are read from its path.
params: threshold (p_all at or above which the confusion matrices call an image ALL: statistics.threshold, as the
metrics files use it).
"""

from collections import defaultdict

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import parse_run_file
from leukemia_dtl.evaluate.figure_style import save_figure
from leukemia_dtl.evaluate.figures import plot_confusion_matrices, plot_reliability_diagram, plot_roc_curves
from leukemia_dtl.evaluate.result_files import read_keyed_metrics, read_predictions
from leukemia_dtl.evaluate.table1 import PredictionSets


def main(snakemake):
    params, inputs, output, subset = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards.subset
    predictions = defaultdict(list)
    for path in inputs.predictions:
        predictions[parse_run_file(path).model].append(read_predictions(path))
    predictions = dict(predictions)
    metrics = PredictionSets(
        seeds=read_keyed_metrics(inputs.metrics, "model", "seed", "subset"),
        ensemble=read_keyed_metrics(inputs.ensemble_metrics, "model", "subset"),
    )
    save_figure(plot_roc_curves(predictions, metrics, subset), output.roc_png, output.roc_pdf)
    confusion = plot_confusion_matrices(predictions, params.threshold)
    save_figure(confusion, output.confusion_png, output.confusion_pdf)
    save_figure(plot_reliability_diagram(predictions), output.reliability_png, output.reliability_pdf)


run_rule(snakemake, main)
