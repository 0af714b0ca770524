"""Rule evaluate_predictions: metrics with confidence intervals for one prediction file. params: statistics."""

from leukemia_dtl.evaluation import evaluate_prediction_file
from leukemia_dtl.fileio import write_json
from leukemia_dtl.rule_runner import run_rule


def main():
    statistics = snakemake.params.statistics
    metrics = evaluate_prediction_file(
        snakemake.input.predictions,
        threshold=statistics["threshold"],
        n_bootstrap=statistics["bootstrap_resamples"],
        seed=statistics["seed"],
        confidence=statistics["confidence"],
    )
    write_json(metrics, snakemake.output.metrics)


run_rule(snakemake, main)
