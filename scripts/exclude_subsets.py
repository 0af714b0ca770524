"""Rule exclude_subsets: keep the training folds, as the paper did."""

from leukemia_dtl.core.fileio import read_tsv, write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.splits import exclude_subsets


def main(snakemake):
    kept, excluded, summary = exclude_subsets(read_tsv(snakemake.input.inventory))
    write_tsv(excluded, snakemake.output.excluded)
    write_tsv(summary, snakemake.output.summary)
    write_tsv(kept, snakemake.output.kept)


run_rule(snakemake, main)
