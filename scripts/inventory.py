"""Rule inventory: every image with subject, label and source, and the rejected files with reasons."""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.inventory import build_inventory


def main(snakemake):
    inventory, rejected = build_inventory(snakemake.params.dataset_root, workers=snakemake.threads)
    write_tsv(rejected, snakemake.output.rejected)
    write_tsv(inventory, snakemake.output.inventory)


run_rule(snakemake, main)
