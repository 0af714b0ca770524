"""Rule download_kaggle: the C-NMC archive from Kaggle, with its sha256. params: dataset."""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.archive import download_kaggle_dataset, write_checksum


def main(snakemake):
    download_kaggle_dataset(snakemake.params.dataset, snakemake.output.archive)
    write_checksum(snakemake.output.archive, snakemake.output.checksum)


run_rule(snakemake, main)
