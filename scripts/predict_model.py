"""Rule predict_model: predict val/test/external with a trained model
(leukemia_dtl.model.inference.predict_subsets).

input:   model (.keras), train_stats (its train_stats.json: the training batch size, tuned or configured),
         split (split TSV), cache_images, cache_index (the image cache files)
output:  val, test, external (prediction TSVs), stats (predict_stats.json)
params:  test_time_augmentation (optional, default False: p_all averaged over the eight dihedral transforms)
threads: CPU threads the backend may use
resources: require_gpu (config require_gpu: stop at once if a given GPU is not usable)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.train_stats import read_train_stats
from leukemia_dtl.core.vocabulary import PREDICTED_SUBSETS


def main(snakemake):
    from leukemia_dtl.model.backend import check_gpu
    from leukemia_dtl.model.inference import predict_subsets
    from leukemia_dtl.model.inputs import cache_dir_of

    check_gpu(snakemake.resources.require_gpu)
    predict_subsets(
        model_path=snakemake.input.model,
        split=snakemake.input.split,
        cache=cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        batch_size=read_train_stats(snakemake.input.train_stats)["batch_size"],
        out_paths={subset: snakemake.output[subset] for subset in PREDICTED_SUBSETS},
        stats_path=snakemake.output.stats,
        threads=snakemake.threads,
        test_time_augmentation=snakemake.params.get("test_time_augmentation", False),
    )


run_rule(snakemake, main)
