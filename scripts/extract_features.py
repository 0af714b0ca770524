"""Rule extract_features: a frozen base's features of the train and val images
(leukemia_dtl.tuning.grid_search.extract_features).

input:   split (split TSV); cache_images, cache_index (the image cache); weights (ImageNet file, if any)
output:  features (<dir>/features.npy), index (<dir>/index.tsv)
params:  model_name, model_options (the model's config entry without training options), image_size,
         seed (tuning.seed), keras_home (Keras cache holding the ImageNet weights)
threads: CPU threads the backend may use
resources: require_gpu (config require_gpu: stop at once if a given GPU is not usable)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.vocabulary import FEATURES_FILE


def main(snakemake):
    from leukemia_dtl.model.backend import check_gpu
    from leukemia_dtl.model.inputs import cache_dir_of
    from leukemia_dtl.tuning.grid_search import extract_features

    check_gpu(snakemake.resources.require_gpu)
    extract_features(
        model_name=snakemake.params.model_name,
        model_options=snakemake.params.model_options,
        image_size=snakemake.params.image_size,
        seed=snakemake.params.seed,
        split_path=snakemake.input.split,
        cache_dir=cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        out_dir=cache_dir_of(snakemake.output.features, snakemake.output.index, FEATURES_FILE),
        threads=snakemake.threads,
    )


run_rule(snakemake, main)
