"""Rule build_image_cache: decode and resize every labelled image once. params: dataset_root, size."""

from leukemia_dtl.fileio import read_tsv
from leukemia_dtl.image_cache import build_image_cache
from leukemia_dtl.rule_runner import run_rule


def main():
    inventory = read_tsv(snakemake.input.inventory)
    # Every image a split can use: the kept training folds and the labelled prelim-phase (external) images.
    wanted = inventory[inventory["label"] != ""]
    build_image_cache(
        snakemake.params.dataset_root,
        wanted["path"].tolist(),
        snakemake.params.size,
        snakemake.output.images,
        snakemake.output.index,
        workers=snakemake.threads,
    )


run_rule(snakemake, main)
