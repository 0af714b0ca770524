"""Rule script: train and score one grid configuration (leukemia_dtl.tuning.tune_configuration).

snakemake.input:   split; either features, features_index (fast path: frozen base, no augmentation)
                   or cache_images, cache_index, weights (whole classifier on images)
snakemake.output:  result (validation.json: the configuration and its val_loss, val_accuracy, val_auc)
snakemake.params:  model_name, model_options (config entry without the grid's keys and epochs),
                   hyperparameters (this job's grid point), epochs, seed (tuning.*), augmentation
                   (the config's, or {} with tuning.augmentation off), image_size, keras_home
snakemake.threads: CPU threads the backend may use
Snakemake injects the ``snakemake`` object; imports follow the KERAS_HOME assignment on purpose.
"""

import os

# Keras reads KERAS_HOME once, when it is first imported, so set it before importing the library.
os.environ["KERAS_HOME"] = str(snakemake.params.keras_home)

from leukemia_dtl.model_inputs import FEATURES, cache_dir_of
from leukemia_dtl.rule_runner import run_rule
from leukemia_dtl.tuning import tune_configuration

fast_path = "features" in snakemake.input.keys()
run_rule(
    snakemake,
    lambda: tune_configuration(
        model_name=snakemake.params.model_name,
        model_options=snakemake.params.model_options,
        hyperparameters=snakemake.params.hyperparameters,
        epochs=snakemake.params.epochs,
        seed=snakemake.params.seed,
        split_path=snakemake.input.split,
        out_path=snakemake.output.result,
        features_dir=(
            cache_dir_of(snakemake.input.features, snakemake.input.features_index, FEATURES)
            if fast_path
            else None
        ),
        cache_dir=None if fast_path else cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        image_size=snakemake.params.image_size,
        augmentation=snakemake.params.augmentation,
        threads=snakemake.threads,
    ),
)
