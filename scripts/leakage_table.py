"""Rule leakage_table: each metric under the random split against the patient split and the external set.

params: metrics_keys ((model, seed, subset) of each metrics file of one scheme, in input order).
"""

from leukemia_dtl.rule_runner import run_rule
from leukemia_dtl.tables import leakage_table, per_seed_metrics, write_table


def main():
    keys = list(map(tuple, snakemake.params.metrics_keys))
    per_scheme = {scheme: per_seed_metrics(dict(zip(keys, snakemake.input[scheme]))) for scheme in ("random", "patient")}
    write_table(
        leakage_table(per_scheme), snakemake.output.tsv, snakemake.output.md, "Cost of the image-level split"
    )


run_rule(snakemake, main)
