"""Rule inventory: every image with subject, label and source, and the rejected files with reasons; stops when
more than params.max_rejected_fraction of the files were rejected."""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.inventory import build_inventory, require_few_rejected


def main(snakemake):
    inventory, rejected = build_inventory(snakemake.params.dataset_root, workers=snakemake.threads)
    require_few_rejected(inventory, rejected, snakemake.params.max_rejected_fraction)
    write_tsv(rejected, snakemake.output.rejected)
    write_tsv(inventory, snakemake.output.inventory)


run_rule(snakemake, main)
