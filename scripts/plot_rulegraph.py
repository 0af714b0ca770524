"""Rule plot_rulegraph: the workflow's own rule graph as the method figure. params: snakefile, configfiles."""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.figures import save_figure
from leukemia_dtl.evaluate.rulegraph import plot_rulegraph, snakemake_rulegraph


def main(snakemake):
    dot = snakemake_rulegraph(snakemake.params.snakefile, snakemake.params.configfiles)
    save_figure(plot_rulegraph(dot), snakemake.output.png, snakemake.output.pdf)


run_rule(snakemake, main)
