"""Rule plot_forest: Table 1 of one held-out subset as a forest plot, every model's prediction sets with their
points and intervals, the paper's value marked on the test subset.

input: metrics, tta_metrics (the seeds' metrics files), ensemble_metrics, tta_ensemble_metrics (the seed
ensembles'); the TTA lists are empty with evaluation.tta off.
Each file's model, seed and subset are read from its path.
params: models, subject_ci_subsets (the subsets whose subject intervals Table 1 shows).
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.figure_style import save_figure
from leukemia_dtl.evaluate.figures import plot_forest
from leukemia_dtl.evaluate.table1 import read_prediction_sets


def main(snakemake):
    params, inputs, output = snakemake.params, snakemake.input, snakemake.output
    prediction_sets = read_prediction_sets(params, inputs)
    figure = plot_forest(prediction_sets, params.models, snakemake.wildcards.subset)
    save_figure(figure, output.png, output.pdf)


run_rule(snakemake, main)
