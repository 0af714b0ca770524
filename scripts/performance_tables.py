"""Rule performance_tables: for one scheme, the paper's Table 1 (table1_performance), its rows beyond the paper
(table1_extended: the seed ensemble with its subject-level comparisons, the validation thresholds and, given,
test-time augmentation) and Table 2, each as TSV and Markdown.

input: metrics, tta_metrics (the seeds' metrics files), ensemble_metrics, tta_ensemble_metrics (the ensembles'),
train_stats and predict_stats (one per trained run: for the folds, per rotation), each file's run read from its
path; ttests, subject_comparison, ensemble_mcnemar.
params: models, subsets, subject_ci_subsets (the subsets whose subject intervals and comparisons table1_extended
shows).
"""

import pandas as pd

from leukemia_dtl.core.fileio import read_json
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import files_by, parse_run_file
from leukemia_dtl.core.train_stats import read_train_stats
from leukemia_dtl.evaluate.formatting import write_table
from leukemia_dtl.evaluate.result_files import per_seed_metrics
from leukemia_dtl.evaluate.table1 import EnsembleComparisons, read_prediction_sets, table1_extended, table1_performance
from leukemia_dtl.evaluate.table2 import table2_compute


def stats_by_run(paths, scheme, read):
    """Each run's stats file, read by ``read``, keyed by (model, the run's name among ``scheme``'s runs), in the
    paths' order."""
    runs = map(parse_run_file, paths)
    return {(run.model, run.run_name(scheme)): read(path) for run, path in zip(runs, paths, strict=True)}


def main(snakemake):
    params, inputs, output, scheme = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards.scheme
    per_seed = per_seed_metrics(files_by(inputs.metrics, "model", "seed", "subset"))
    prediction_sets = read_prediction_sets(params, inputs)
    thresholds = [metrics["threshold"] for metrics in prediction_sets.seeds.values()]
    table1 = table1_performance(
        per_seed, pd.read_csv(inputs.ttests, sep="\t"), params.models, params.subsets, thresholds
    )
    write_table(table1, output.table1_tsv, output.table1_md, f"Table 1: performance ({scheme} split)")
    comparisons = EnsembleComparisons(
        subjects=pd.read_csv(inputs.subject_comparison, sep="\t"),
        mcnemar=pd.read_csv(inputs.ensemble_mcnemar, sep="\t"),
    )
    extended = table1_extended(prediction_sets, comparisons, params.models, params.subsets)
    write_table(
        extended,
        output.table1_extended_tsv,
        output.table1_extended_md,
        f"Table 1, beyond the paper: seed ensemble, validation thresholds and TTA ({scheme} split)",
    )
    train_stats = stats_by_run(inputs.train_stats, scheme, read_train_stats)
    predict_stats = stats_by_run(inputs.predict_stats, scheme, read_json)
    table2 = table2_compute(train_stats, predict_stats, params.models)
    write_table(table2, output.table2_tsv, output.table2_md, f"Table 2: computation ({scheme} split)")


run_rule(snakemake, main)
