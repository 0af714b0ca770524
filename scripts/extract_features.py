"""Rule script: a frozen base's features of the train and val images (leukemia_dtl.tuning.extract_features).

snakemake.input:   split (split TSV); cache_images, cache_index (the image cache); weights (ImageNet file, if any)
snakemake.output:  features (<dir>/features.npy), index (<dir>/index.tsv)
snakemake.params:  model_name, model_options (the model's config entry without training options),
                   image_size, seed (tuning.seed), keras_home (Keras cache holding the ImageNet weights)
snakemake.threads: CPU threads the backend may use
Snakemake injects the ``snakemake`` object; imports follow the KERAS_HOME assignment on purpose.
"""

import os

# Keras reads KERAS_HOME once, when it is first imported, so set it before importing the library.
os.environ["KERAS_HOME"] = str(snakemake.params.keras_home)

from leukemia_dtl.model_inputs import FEATURES, cache_dir_of
from leukemia_dtl.rule_runner import run_rule
from leukemia_dtl.tuning import extract_features

run_rule(
    snakemake,
    lambda: extract_features(
        model_name=snakemake.params.model_name,
        model_options=snakemake.params.model_options,
        image_size=snakemake.params.image_size,
        seed=snakemake.params.seed,
        split_path=snakemake.input.split,
        cache_dir=cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        out_dir=cache_dir_of(snakemake.output.features, snakemake.output.index, FEATURES),
        threads=snakemake.threads,
    ),
)
