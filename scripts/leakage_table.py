"""Rule leakage_table: each metric under the random split against the patient split and the external set.

input: one list of metrics files per scheme, named by the scheme.
params: metrics_keys ((model, seed, subset) of each metrics file of one scheme, in input order).
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.result_files import per_seed_metrics
from leukemia_dtl.evaluate.tables import leakage_table, write_table


def main(snakemake):
    keys = list(map(tuple, snakemake.params.metrics_keys))
    per_scheme = {
        scheme: per_seed_metrics(dict(zip(keys, files, strict=True))) for scheme, files in snakemake.input.items()
    }
    write_table(leakage_table(per_scheme), snakemake.output.tsv, snakemake.output.md, "Cost of the image-level split")


run_rule(snakemake, main)
