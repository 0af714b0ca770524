"""Rule split_dataset: one split scheme and its leakage report. params: scheme, seed."""

from leukemia_dtl.core.fileio import read_tsv, write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.splits import leakage_report, split_dataset


def main(snakemake):
    kept, excluded = read_tsv(snakemake.input.kept), read_tsv(snakemake.input.excluded)
    split = split_dataset(kept, excluded, snakemake.params.scheme, snakemake.params.seed)
    write_tsv(leakage_report(split), snakemake.output.leakage)
    write_tsv(split, snakemake.output.split)


run_rule(snakemake, main)
