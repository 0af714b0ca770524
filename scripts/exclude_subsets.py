"""Rule exclude_subsets: keep the training folds, as the paper did."""

from leukemia_dtl.fileio import read_tsv, write_tsv
from leukemia_dtl.rule_runner import run_rule
from leukemia_dtl.splits import exclude_subsets


def main():
    kept, excluded, summary = exclude_subsets(read_tsv(snakemake.input.inventory))
    write_tsv(excluded, snakemake.output.excluded)
    write_tsv(summary, snakemake.output.summary)
    write_tsv(kept, snakemake.output.kept)


run_rule(snakemake, main)
