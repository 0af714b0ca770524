"""Rule plot_training_curves: accuracy and loss per model, mean over seeds with a band (paper Figs. 4-5).

input: histories (one per model and seed; each file's model is read from its path).
"""

from collections import defaultdict

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import parse_run_file
from leukemia_dtl.evaluate.figure_style import save_figure
from leukemia_dtl.evaluate.figures import plot_training_curves
from leukemia_dtl.evaluate.result_files import read_training_history


def main(snakemake):
    histories = defaultdict(list)
    for path in snakemake.input.histories:
        histories[parse_run_file(path).model].append(read_training_history(path))
    save_figure(plot_training_curves(dict(histories)), snakemake.output.png, snakemake.output.pdf)


run_rule(snakemake, main)
