"""Rule performance_tables: the paper's Tables 1 and 2 for one scheme, as TSV and Markdown.

params: metrics_keys ((model, seed, subset) per metrics file), run_keys ((model, seed, "") per run), models,
subsets.
"""

import pandas as pd

from leukemia_dtl.core.fileio import read_json
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.result_files import per_seed_metrics
from leukemia_dtl.evaluate.tables import table1_performance, table2_compute, write_table


def main(snakemake):
    params, output, scheme = snakemake.params, snakemake.output, snakemake.wildcards.scheme
    per_seed = per_seed_metrics(dict(zip(map(tuple, params.metrics_keys), snakemake.input.metrics, strict=True)))
    ttests = pd.read_csv(snakemake.input.ttests, sep="\t")
    table1 = table1_performance(per_seed, ttests, params.models, params.subsets)
    write_table(table1, output.table1_tsv, output.table1_md, f"Table 1: performance ({scheme} split)")
    runs = [tuple(key[:2]) for key in params.run_keys]
    table2 = table2_compute(
        {run: read_json(path) for run, path in zip(runs, snakemake.input.train_stats, strict=True)},
        {run: read_json(path) for run, path in zip(runs, snakemake.input.predict_stats, strict=True)},
        params.models,
    )
    write_table(table2, output.table2_tsv, output.table2_md, f"Table 2: computation ({scheme} split)")


run_rule(snakemake, main)
