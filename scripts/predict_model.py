"""Rule script: predict val/test/external with a trained model (leukemia_dtl.prediction.predict_subsets).

snakemake.input:  model (.keras), train_stats (its train_stats.json: the training batch size, tuned or
                  configured), split (split TSV), cache_images, cache_index (the image cache files)
snakemake.output: val, test, external (prediction TSVs), stats (predict_stats.json)
snakemake.threads: CPU threads the backend may use
Snakemake injects the ``snakemake`` object.
"""

from leukemia_dtl.fileio import read_json
from leukemia_dtl.model_inputs import cache_dir_of
from leukemia_dtl.prediction import PREDICTED_SUBSETS, predict_subsets
from leukemia_dtl.rule_runner import run_rule

run_rule(
    snakemake,
    lambda: predict_subsets(
        model_path=snakemake.input.model,
        split=snakemake.input.split,
        cache=cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        batch_size=read_json(snakemake.input.train_stats)["batch_size"],
        out_paths={subset: snakemake.output[subset] for subset in PREDICTED_SUBSETS},
        stats_path=snakemake.output.stats,
        threads=snakemake.threads,
    ),
)
