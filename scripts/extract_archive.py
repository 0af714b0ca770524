"""Rule extract_archive: unpack the archive safely and record its sha256."""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.archive import extract_archive, write_checksum


def main(snakemake):
    # Extraction first: an archive it refuses leaves no output at all, not even its checksum.
    extract_archive(snakemake.input.archive, snakemake.output.folder)
    write_checksum(snakemake.input.archive, snakemake.output.checksum)


run_rule(snakemake, main)
