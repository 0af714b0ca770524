"""Rule plot_subset_figures: ROC curves, confusion matrices and reliability diagram of one subset.

params: run_keys ((model, seed, subset) of each prediction file, in input order), threshold (p_all at or above
which the confusion matrices call an image ALL: statistics.threshold, as the metrics files use it).
"""

from collections import defaultdict

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.figures import (
    plot_confusion_matrices,
    plot_reliability_diagram,
    plot_roc_curves,
    save_figure,
)
from leukemia_dtl.evaluate.result_files import read_predictions


def main(snakemake):
    predictions = defaultdict(list)
    for (model, _seed, _subset), path in zip(snakemake.params.run_keys, snakemake.input.predictions, strict=True):
        predictions[model].append(read_predictions(path))
    predictions = dict(predictions)
    output = snakemake.output
    save_figure(plot_roc_curves(predictions, snakemake.wildcards.subset), output.roc_png, output.roc_pdf)
    confusion = plot_confusion_matrices(predictions, snakemake.params.threshold)
    save_figure(confusion, output.confusion_png, output.confusion_pdf)
    save_figure(plot_reliability_diagram(predictions), output.reliability_png, output.reliability_pdf)


run_rule(snakemake, main)
