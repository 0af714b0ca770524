"""Rule build_image_cache: decode and resize every labelled image once. params: dataset_root, size."""

from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.image_cache import build_image_cache


def main(snakemake):
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
