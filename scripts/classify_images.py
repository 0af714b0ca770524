"""Rule classify: every image under a folder scored with a trained model or a seed ensemble
(leukemia_dtl.model.classify.classify_folder).

input:   models (the .keras files; several: p_all is their mean), folder (the images, searched recursively)
output:  predictions (path, p_all, pred, model), rejected (path, reason: every file not scored)
params:  model (the label written in the model column, e.g. random/vgg19/seed0), threshold (pred is ALL
         where p_all >= threshold)
threads: CPU threads the backend may use
resources: require_gpu (config require_gpu: stop at once if a given GPU is not usable)
"""

from leukemia_dtl.core.rule_runner import run_rule


def main(snakemake):
    from leukemia_dtl.model.backend import check_gpu
    from leukemia_dtl.model.classify import classify_folder

    check_gpu(snakemake.resources.require_gpu)
    models = snakemake.input.models
    classify_folder(
        # Snakemake hands a one-file input over as a string.
        model_paths=[models] if isinstance(models, str) else list(models),
        folder=snakemake.input.folder,
        threshold=float(snakemake.params.threshold),
        label=snakemake.params.model,
        predictions_path=snakemake.output.predictions,
        rejected_path=snakemake.output.rejected,
        threads=snakemake.threads,
    )


run_rule(snakemake, main)
