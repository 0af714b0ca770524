"""Rule build_image_cache: decode and resize once every image of one set: the labelled images, or the
unlabelled final-phase ones. params: dataset_root, size, images ("labelled", the default, or "final_phase")."""

from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.image_cache import build_image_cache, images_to_cache


def main(snakemake):
    inventory = read_tsv(snakemake.input.inventory)
    build_image_cache(
        snakemake.params.dataset_root,
        images_to_cache(inventory, snakemake.params.get("images", "labelled")),
        snakemake.params.size,
        snakemake.output.images,
        snakemake.output.index,
        workers=snakemake.threads,
    )


run_rule(snakemake, main)
