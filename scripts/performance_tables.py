"""Rule performance_tables: for one scheme, the paper's Table 1 (table1_performance), its rows beyond the paper
(table1_extended: the seed ensemble with its subject-level comparisons, the validation thresholds and, given,
test-time augmentation) and Table 2, each as TSV and Markdown.

params: metrics_keys and tta_metrics_keys ((model, seed, subset) per metrics file), run_keys ((model, run, "") per
trained run: the run is its seed, or "seed N, foldK" for the folds), ensemble_keys and tta_ensemble_keys ((model,
subset) per ensemble metrics file), models, subsets, subject_ci_subsets (the subsets whose subject intervals and
comparisons table1_extended shows).
"""

import pandas as pd

from leukemia_dtl.core.fileio import read_json
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.result_files import per_seed_metrics
from leukemia_dtl.evaluate.tables import (
    EnsembleComparisons,
    read_prediction_sets,
    table1_extended,
    table1_performance,
    table2_compute,
    write_table,
)


def main(snakemake):
    params, inputs, output, scheme = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards.scheme
    per_seed = per_seed_metrics(dict(zip(map(tuple, params.metrics_keys), inputs.metrics, strict=True)))
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
    runs = [tuple(key[:2]) for key in params.run_keys]
    table2 = table2_compute(
        {run: read_json(path) for run, path in zip(runs, inputs.train_stats, strict=True)},
        {run: read_json(path) for run, path in zip(runs, inputs.predict_stats, strict=True)},
        params.models,
    )
    write_table(table2, output.table2_tsv, output.table2_md, f"Table 2: computation ({scheme} split)")


run_rule(snakemake, main)
