"""Rule compare_models: paired t-tests, McNemar, DeLong and agreement of every model pair in one scheme.

input: metrics, predictions (each seed's files, per model, seed and subset: each file's run is read from its path).
params: models, statistics.
"""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.evaluate.model_comparison import compare_models


def main(snakemake):
    params = snakemake.params
    tables = compare_models(
        metrics_files=files_by(snakemake.input.metrics, "model", "seed", "subset"),
        prediction_files=files_by(snakemake.input.predictions, "model", "seed", "subset"),
        models=params.models,
        threshold=params.statistics["threshold"],
        mcnemar_exact_below=params.statistics["mcnemar_exact_below"],
    )
    for name, table in tables.items():
        write_tsv(table, snakemake.output[name])


run_rule(snakemake, main)
