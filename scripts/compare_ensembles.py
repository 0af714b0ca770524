"""Rule compare_ensembles: DeLong's paired test of each seed ensemble's ROC-AUC against each of its seeds'
(leukemia_dtl.evaluate.ensemble.ensemble_vs_seeds), Holm-adjusted over the table.

input:  ensemble (the ensembles' prediction TSVs), seeds (the seeds' prediction TSVs); each file's model, kind,
        seed and subset are read from its path
output: tsv (results/stats/{scheme}/ensemble_delong.tsv)
"""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.evaluate.ensemble import ensemble_vs_seeds


def main(snakemake):
    table = ensemble_vs_seeds(
        ensemble_files=files_by(snakemake.input.ensemble, "model", "kind", "subset"),
        seed_files=files_by(snakemake.input.seeds, "model", "kind", "seed", "subset"),
    )
    write_tsv(table, snakemake.output.tsv)


run_rule(snakemake, main)
