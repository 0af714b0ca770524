"""Rule performance_tables: the paper's Tables 1 and 2 for one scheme, as TSV and Markdown.

params: metrics_keys ((model, seed, subset) per metrics file), run_keys ((model, seed, "") per run), models,
subsets.
"""

import pandas as pd

from leukemia_dtl.fileio import read_json
from leukemia_dtl.rule_runner import run_rule
from leukemia_dtl.tables import per_seed_metrics, table1_performance, table2_compute, write_table


def main():
    params, output = snakemake.params, snakemake.output
    per_seed = per_seed_metrics(dict(zip(map(tuple, params.metrics_keys), snakemake.input.metrics)))
    ttests = pd.read_csv(snakemake.input.ttests, sep="\t")
    table1 = table1_performance(per_seed, ttests, params.models, params.subsets)
    write_table(table1, output.table1_tsv, output.table1_md, f"Table 1: performance ({snakemake.wildcards.scheme} split)")
    runs = [tuple(key[:2]) for key in params.run_keys]
    table2 = table2_compute(
        {run: read_json(path) for run, path in zip(runs, snakemake.input.train_stats)},
        {run: read_json(path) for run, path in zip(runs, snakemake.input.predict_stats)},
        params.models,
    )
    write_table(table2, output.table2_tsv, output.table2_md, f"Table 2: computation ({snakemake.wildcards.scheme} split)")


run_rule(snakemake, main)
