"""Rule plot_training_curves: accuracy and loss per model, mean over seeds with a band (paper Figs. 4-5).

params: run_keys ((model, seed, "") of each history file, in input order).
"""

from collections import defaultdict

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.figures import plot_training_curves, save_figure
from leukemia_dtl.evaluate.result_files import read_training_history


def main(snakemake):
    histories = defaultdict(list)
    for (model, _seed, _subset), path in zip(snakemake.params.run_keys, snakemake.input.histories, strict=True):
        histories[model].append(read_training_history(path))
    save_figure(plot_training_curves(dict(histories)), snakemake.output.png, snakemake.output.pdf)


run_rule(snakemake, main)
