"""Rule script: rank one scheme's and model's grid configurations, write selected.yaml and the heat map.

snakemake.input:  results (validation.json of every configuration, in grid order)
snakemake.output: selected (selected.yaml), ranking (ranking.tsv), heatmap_png, heatmap_pdf
snakemake.params: axes (the grid's keys, in config order), metric (tuning.metric)
"""

from leukemia_dtl.figures import plot_tuning_heatmap, save_figure
from leukemia_dtl.rule_runner import run_rule
from leukemia_dtl.selection import select_configuration


def main():
    axes, metric = snakemake.params.axes, snakemake.params.metric
    ranking = select_configuration(
        snakemake.input.results, axes, metric, snakemake.output.selected, snakemake.output.ranking
    )
    save_figure(plot_tuning_heatmap(ranking, axes, metric), snakemake.output.heatmap_png, snakemake.output.heatmap_pdf)


run_rule(snakemake, main)
