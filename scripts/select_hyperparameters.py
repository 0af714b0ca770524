"""Rule select_hyperparameters: rank one scheme's and model's grid configurations, write selected.yaml and
the heat map.

input:  results (validation.json of every configuration, in grid order)
output: selected (selected.yaml), ranking (ranking.tsv), heatmap_png, heatmap_pdf
params: axes (the grid's keys, in config order), metric (tuning.metric)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.figure_style import save_figure
from leukemia_dtl.evaluate.tuning_heatmap import plot_tuning_heatmap
from leukemia_dtl.tuning.selection import select_configuration


def main(snakemake):
    axes, metric, output = snakemake.params.axes, snakemake.params.metric, snakemake.output
    ranking = select_configuration(snakemake.input.results, axes, metric, output.selected, output.ranking)
    save_figure(plot_tuning_heatmap(ranking, axes, metric), output.heatmap_png, output.heatmap_pdf)


run_rule(snakemake, main)
