"""Rule compare_models: paired t-tests, McNemar, DeLong and agreement of every model pair in one scheme.

params: metrics_keys / prediction_keys ((model, seed, subset) of each input file, in order), models,
statistics.
"""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.model_comparison import compare_models


def main(snakemake):
    params = snakemake.params
    tables = compare_models(
        metrics_files=dict(zip(map(tuple, params.metrics_keys), snakemake.input.metrics, strict=True)),
        prediction_files=dict(zip(map(tuple, params.prediction_keys), snakemake.input.predictions, strict=True)),
        models=params.models,
        threshold=params.statistics["threshold"],
        mcnemar_exact_below=params.statistics["mcnemar_exact_below"],
    )
    for name, table in tables.items():
        write_tsv(table, snakemake.output[name])


run_rule(snakemake, main)
