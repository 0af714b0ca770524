"""Rule predict_model: every prediction of one trained run from one load of its model
(leukemia_dtl.model.inference.predict_run).

input:   model (.keras), train_stats (its train_stats.json: the training batch size, tuned or configured),
         split (split TSV), cache_images, cache_index (the image cache files), final_phase_images,
         final_phase_index (the final-phase image cache files)
output:  per prediction kind in params.kinds (plain, tta): <kind>_val, <kind>_test, <kind>_external (prediction
         TSVs), <kind>_final_phase (the final-phase images' P(ALL)), <kind>_stats (predict_stats.json)
params:  kinds (plain, and tta with evaluation.tta: p_all averaged over the eight dihedral transforms),
         timing_images (evaluation.timing_images: the most test images inference is timed on)
threads: CPU threads the backend may use
resources: require_gpu (config require_gpu: stop at once if a given GPU is not usable)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.train_stats import read_train_stats
from leukemia_dtl.core.vocabulary import PREDICTED_SUBSETS


def main(snakemake):
    from leukemia_dtl.model.backend import check_gpu
    from leukemia_dtl.model.inference import PredictionFiles, predict_run
    from leukemia_dtl.model.inputs import cache_dir_of

    check_gpu(snakemake.resources.require_gpu)
    output = snakemake.output
    predict_run(
        model_path=snakemake.input.model,
        split=snakemake.input.split,
        cache=cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        batch_size=read_train_stats(snakemake.input.train_stats)["batch_size"],
        outputs={
            kind: PredictionFiles(
                subsets={subset: output[f"{kind}_{subset}"] for subset in PREDICTED_SUBSETS},
                stats=output[f"{kind}_stats"],
                final_phase=output[f"{kind}_final_phase"],
            )
            for kind in snakemake.params.kinds
        },
        final_phase_cache=cache_dir_of(snakemake.input.final_phase_images, snakemake.input.final_phase_index),
        timing_images=snakemake.params.timing_images,
        threads=snakemake.threads,
    )


run_rule(snakemake, main)
