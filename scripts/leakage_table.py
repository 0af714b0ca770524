"""Rule leakage_table: each metric under the random split against the patient split and the external set.

input: one list of metrics files per scheme, named by the scheme (each file's model, seed and subset are read from
its path).
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.evaluate.formatting import write_table
from leukemia_dtl.evaluate.leakage_table import leakage_table
from leukemia_dtl.evaluate.result_files import per_seed_metrics


def main(snakemake):
    per_scheme = {
        scheme: per_seed_metrics(files_by(files, "model", "seed", "subset"))
        for scheme, files in snakemake.input.items()
    }
    write_table(leakage_table(per_scheme), snakemake.output.tsv, snakemake.output.md, "Cost of the image-level split")


run_rule(snakemake, main)
