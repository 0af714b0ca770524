"""Rule evaluate_predictions: metrics with confidence intervals for one run's val, test and external
predictions. input and output: one file per subset, named by the subset. params: statistics."""

from leukemia_dtl.evaluation import evaluate_prediction_file
from leukemia_dtl.fileio import write_json
from leukemia_dtl.rule_runner import run_rule


def main():
    statistics = snakemake.params.statistics
    for subset in snakemake.output.keys():
        metrics = evaluate_prediction_file(
            getattr(snakemake.input, subset),
            threshold=statistics["threshold"],
            n_bootstrap=statistics["bootstrap_resamples"],
            seed=statistics["seed"],
            confidence=statistics["confidence"],
        )
        write_json(metrics, getattr(snakemake.output, subset))


run_rule(snakemake, main)
