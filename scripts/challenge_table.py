"""Rule challenge_table: this project's external-subset metrics beside the published C-NMC 2019 results
(leukemia_dtl.evaluate.challenge.challenge_table), as TSV and Markdown.

input:  seed_metrics (the seeds' external metrics JSONs), ensemble_metrics (the ensembles' external metrics JSONs)
output: tsv, md
params: models, seed_keys ((model, kind, seed) of each seed_metrics file), ensemble_keys ((model, kind) of each
        ensemble_metrics file); kind is "plain" or "tta"; data_source (config data.source: a real source's external
        subset should be the challenge's 1,867 prelim-phase images)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.challenge import challenge_table
from leukemia_dtl.evaluate.tables import write_table


def main(snakemake):
    params, output = snakemake.params, snakemake.output
    table = challenge_table(
        seed_metrics_files=dict(zip(map(tuple, params.seed_keys), snakemake.input.seed_metrics, strict=True)),
        ensemble_metrics_files=dict(
            zip(map(tuple, params.ensemble_keys), snakemake.input.ensemble_metrics, strict=True)
        ),
        models=params.models,
        data_source=params.data_source,
    )
    write_table(table, output.tsv, output.md, f"C-NMC 2019 challenge yardstick ({snakemake.wildcards.scheme} split)")


run_rule(snakemake, main)
