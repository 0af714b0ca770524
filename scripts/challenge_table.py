"""Rule challenge_table: this project's external-subset metrics beside the published C-NMC 2019 results
(leukemia_dtl.evaluate.challenge.challenge_table), as TSV and Markdown.

input:  seed_metrics (the seeds' external metrics JSONs), ensemble_metrics (the ensembles' external metrics JSONs);
        each file's model, kind ("plain" or "tta") and seed are read from its path
output: tsv, md
params: models, data_source (config data.source: a real source's external subset should be the challenge's 1,867
        prelim-phase images)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.evaluate.challenge import challenge_table
from leukemia_dtl.evaluate.formatting import write_table


def main(snakemake):
    params, output = snakemake.params, snakemake.output
    table = challenge_table(
        seed_metrics_files=files_by(snakemake.input.seed_metrics, "model", "kind", "seed"),
        ensemble_metrics_files=files_by(snakemake.input.ensemble_metrics, "model", "kind"),
        models=params.models,
        data_source=params.data_source,
    )
    write_table(table, output.tsv, output.md, f"C-NMC 2019 challenge yardstick ({snakemake.wildcards.scheme} split)")


run_rule(snakemake, main)
