"""Rule extract_archive: unpack the archive safely and record its sha256."""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.archive import extract_archive, write_checksum


def main(snakemake):
    write_checksum(snakemake.input.archive, snakemake.output.checksum)
    extract_archive(snakemake.input.archive, snakemake.output.folder)


run_rule(snakemake, main)
