"""Rule performance_tables: the paper's Tables 1 and 2 for one scheme, as TSV and Markdown; Table 1 goes on
with the seed ensemble, the validation thresholds and, given, test-time augmentation.

params: metrics_keys and tta_metrics_keys ((model, seed, subset) per metrics file), run_keys ((model, seed, "")
per run), ensemble_keys and tta_ensemble_keys ((model, subset) per ensemble metrics file), models, subsets,
subject_ci_subsets (the subsets whose subject intervals Table 1 shows).
"""

import pandas as pd

from leukemia_dtl.core.fileio import read_json
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.result_files import per_seed_metrics
from leukemia_dtl.evaluate.tables import PredictionSets, table1_performance, table2_compute, write_table


def _read_keyed(keys, paths) -> dict:
    return {tuple(key): read_json(path) for key, path in zip(keys, paths, strict=True)}


def main(snakemake):
    params, inputs, output, scheme = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards.scheme
    per_seed = per_seed_metrics(dict(zip(map(tuple, params.metrics_keys), inputs.metrics, strict=True)))
    ttests = pd.read_csv(inputs.ttests, sep="\t")
    prediction_sets = PredictionSets(
        seeds=_read_keyed(params.metrics_keys, inputs.metrics),
        ensemble=_read_keyed(params.ensemble_keys, inputs.ensemble_metrics),
        tta_seeds=_read_keyed(params.tta_metrics_keys, inputs.tta_metrics),
        tta_ensemble=_read_keyed(params.tta_ensemble_keys, inputs.tta_ensemble_metrics),
        subject_ci_subsets=params.subject_ci_subsets,
    )
    table1 = table1_performance(per_seed, ttests, params.models, params.subsets, prediction_sets)
    write_table(table1, output.table1_tsv, output.table1_md, f"Table 1: performance ({scheme} split)")
    runs = [tuple(key[:2]) for key in params.run_keys]
    table2 = table2_compute(
        {run: read_json(path) for run, path in zip(runs, inputs.train_stats, strict=True)},
        {run: read_json(path) for run, path in zip(runs, inputs.predict_stats, strict=True)},
        params.models,
    )
    write_table(table2, output.table2_tsv, output.table2_md, f"Table 2: computation ({scheme} split)")


run_rule(snakemake, main)
