"""Rule compare_ensembles: DeLong's paired test of each seed ensemble's ROC-AUC against each of its seeds'
(leukemia_dtl.evaluate.ensemble.ensemble_vs_seeds), Holm-adjusted over the table.

input:  ensemble (the ensembles' prediction TSVs), seeds (the seeds' prediction TSVs)
output: tsv (results/stats/{scheme}/ensemble_delong.tsv)
params: ensemble_keys ((model, kind, subset) of each ensemble file, in order),
        seed_keys ((model, kind, seed, subset) of each seed file, in order)
"""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.ensemble import ensemble_vs_seeds


def main(snakemake):
    params = snakemake.params
    table = ensemble_vs_seeds(
        ensemble_files=dict(zip(map(tuple, params.ensemble_keys), snakemake.input.ensemble, strict=True)),
        seed_files=dict(zip(map(tuple, params.seed_keys), snakemake.input.seeds, strict=True)),
    )
    write_tsv(table, snakemake.output.tsv)


run_rule(snakemake, main)
