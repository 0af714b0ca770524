"""Rule evaluate_predictions: metrics with image- and subject-level confidence intervals for one prediction
set's val, test and external predictions, each also at the threshold chosen on the set's val predictions.
input and output: one file per subset, named by the subset. params: statistics."""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.metrics import evaluate_prediction_set
from leukemia_dtl.evaluate.result_files import write_metrics


def main(snakemake):
    statistics = snakemake.params.statistics
    metrics = evaluate_prediction_set(
        {subset: snakemake.input[subset] for subset, _ in snakemake.output.items()},
        threshold=statistics["threshold"],
        n_bootstrap=statistics["bootstrap_resamples"],
        seed=statistics["seed"],
        confidence=statistics["confidence"],
        min_subjects_per_class=statistics["min_subjects_per_class"],
    )
    for subset, metrics_path in snakemake.output.items():
        write_metrics(metrics[subset], metrics_path)


run_rule(snakemake, main)
