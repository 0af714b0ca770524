"""Rule tune_model: train and score one grid configuration (leukemia_dtl.tuning.grid_search).

input:   split; either features, features_index (fast path: frozen base, no augmentation)
         or cache_images, cache_index, weights (whole classifier on images)
output:  result (validation.json: the configuration and its val_loss, val_accuracy, val_auc)
params:  model_name, model_options (config entry without the grid's keys and epochs), hyperparameters
         (this job's grid point), epochs, seed (tuning.*), augmentation (the config's, or {} with
         tuning.augmentation off), image_size, keras_home, classifier_output (what the classifiers output:
         not read here, it reruns configurations scored by classifiers of an earlier format)
threads: CPU threads the backend may use
resources: require_gpu (config require_gpu: stop at once if a given GPU is not usable)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.vocabulary import FEATURES_FILE


def main(snakemake):
    from leukemia_dtl.model.backend import check_gpu
    from leukemia_dtl.model.inputs import cache_dir_of
    from leukemia_dtl.tuning.grid_search import tune_configuration

    inputs = snakemake.input
    if inputs.get("features"):
        data = {"features_dir": cache_dir_of(inputs.features, inputs.features_index, FEATURES_FILE)}
    else:
        # Only the image path needs a GPU: the fast path trains a small head on features.
        check_gpu(snakemake.resources.require_gpu)
        data = {"cache_dir": cache_dir_of(inputs.cache_images, inputs.cache_index)}
    tune_configuration(
        model_name=snakemake.params.model_name,
        model_options=snakemake.params.model_options,
        hyperparameters=snakemake.params.hyperparameters,
        epochs=snakemake.params.epochs,
        seed=snakemake.params.seed,
        split_path=inputs.split,
        out_path=snakemake.output.result,
        image_size=snakemake.params.image_size,
        augmentation=snakemake.params.augmentation,
        threads=snakemake.threads,
        **data,
    )


run_rule(snakemake, main)
