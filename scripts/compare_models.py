"""Rule compare_models: paired t-tests, McNemar, DeLong and agreement of every model pair in one scheme.

params: metrics_keys / prediction_keys ((model, seed, subset) of each input file, in order), models,
statistics.
"""

from leukemia_dtl.evaluation import compare_models
from leukemia_dtl.fileio import write_tsv
from leukemia_dtl.rule_runner import run_rule


def main():
    params = snakemake.params
    tables = compare_models(
        metrics_files=dict(zip(map(tuple, params.metrics_keys), snakemake.input.metrics)),
        prediction_files=dict(zip(map(tuple, params.prediction_keys), snakemake.input.predictions)),
        models=params.models,
        threshold=params.statistics["threshold"],
        mcnemar_exact_below=params.statistics["mcnemar_exact_below"],
    )
    for name, table in tables.items():
        write_tsv(table, snakemake.output[name])


run_rule(snakemake, main)
