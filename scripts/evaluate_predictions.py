"""Rule evaluate_predictions: metrics with confidence intervals for one run's val, test and external
predictions. input and output: one file per subset, named by the subset. params: statistics."""

from leukemia_dtl.core.fileio import write_json
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.metrics import evaluate_prediction_file


def main(snakemake):
    statistics = snakemake.params.statistics
    for subset, metrics_path in snakemake.output.items():
        metrics = evaluate_prediction_file(
            snakemake.input[subset],
            threshold=statistics["threshold"],
            n_bootstrap=statistics["bootstrap_resamples"],
            seed=statistics["seed"],
            confidence=statistics["confidence"],
        )
        write_json(metrics, metrics_path)


run_rule(snakemake, main)
