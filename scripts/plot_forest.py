"""Rule plot_forest: Table 1 of one held-out subset as a forest plot, every model's prediction sets with their
points and intervals, the paper's value marked on the test subset.

input: metrics, tta_metrics (the seeds' metrics files), ensemble_metrics, tta_ensemble_metrics (the seed
ensembles'); the TTA lists are empty with evaluation.tta off.
params: metrics_keys and tta_metrics_keys ((model, seed, subset) per seed's file, in input order), ensemble_keys
and tta_ensemble_keys ((model, subset) per ensemble's file), models, subject_ci_subsets (the subsets whose subject
intervals Table 1 shows).
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.figures import plot_forest, save_figure
from leukemia_dtl.evaluate.tables import read_prediction_sets


def main(snakemake):
    params, inputs, output = snakemake.params, snakemake.input, snakemake.output
    prediction_sets = read_prediction_sets(params, inputs)
    figure = plot_forest(prediction_sets, params.models, snakemake.wildcards.subset)
    save_figure(figure, output.png, output.pdf)


run_rule(snakemake, main)
