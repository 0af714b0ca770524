"""Rule extract_archive: unpack the archive safely and record its sha256."""

from leukemia_dtl.acquire import extract_archive, write_checksum
from leukemia_dtl.rule_runner import run_rule


def main():
    write_checksum(snakemake.input.archive, snakemake.output.checksum)
    extract_archive(snakemake.input.archive, snakemake.output.folder)


run_rule(snakemake, main)
