"""Rule script: train one model with one seed (leukemia_dtl.training.train_model).

snakemake.input:   split (split TSV); cache_images, cache_index (<cache_dir>/images.npy, <cache_dir>/index.tsv);
                   hyperparameters (selected.yaml of the tuning, with hyperparameters: tuned)
snakemake.output:  model (.keras), history (history.tsv), stats (train_stats.json)
snakemake.params:  model_name ("vgg19" | "efficientnetb3"), model_options (the config's models.<name> entry),
                   augmentation (config augmentation), image_size, seed, precision, deterministic,
                   backup_dir (resume state; keep it outside the outputs so Snakemake leaves it alone),
                   keras_home (Keras cache holding the ImageNet weights; see fetch_weights.py)
snakemake.threads: CPU threads the backend may use
Snakemake injects the ``snakemake`` object; imports follow the KERAS_HOME assignment on purpose.
"""

import os

# Keras reads KERAS_HOME once, when it is first imported, so set it before importing the library.
os.environ["KERAS_HOME"] = str(snakemake.params.keras_home)

from leukemia_dtl.model_inputs import cache_dir_of
from leukemia_dtl.rule_runner import run_rule
from leukemia_dtl.training import train_model

run_rule(
    snakemake,
    lambda: train_model(
        model_name=snakemake.params.model_name,
        model_options=snakemake.params.model_options,
        augmentation=snakemake.params.augmentation,
        image_size=snakemake.params.image_size,
        seed=snakemake.params.seed,
        precision=snakemake.params.precision,
        deterministic=snakemake.params.deterministic,
        split_path=snakemake.input.split,
        cache_dir=cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        backup_dir=snakemake.params.backup_dir,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        stats_path=snakemake.output.stats,
        tuned_hyperparameters_path=snakemake.input.get("hyperparameters") or None,
        threads=snakemake.threads,
    ),
)
