"""Rule plot_rulegraph: the rule graph of this very run (its Snakefile and config) as the method figure.

params: snakefile, configfiles (in the order the run applied them), config_args (its --config KEY=VALUE
        arguments); paths relative to the workflow's directory, the folder that holds scripts/
"""

from pathlib import Path

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.figure_style import save_figure
from leukemia_dtl.evaluate.rulegraph import plot_rulegraph, snakemake_rulegraph


def main(snakemake):
    params = snakemake.params
    workflow_dir = Path(snakemake.scriptdir).parent
    dot = snakemake_rulegraph(workflow_dir, params.snakefile, params.configfiles, params.config_args)
    save_figure(plot_rulegraph(dot), snakemake.output.png, snakemake.output.pdf)


run_rule(snakemake, main)
