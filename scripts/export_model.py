"""Rule export_model: a trained model as a TensorFlow SavedModel and an ONNX file, both checked against the
.keras model before they are published (leukemia_dtl.model.export.export_run).

input:   model (.keras), split (split TSV: the check runs on its first test images), cache_images, cache_index
         (the image cache files)
output:  saved_model (a directory), onnx (model.onnx), check (export_check.json: the largest differences
         found, the ONNX opset and the software versions)
threads: CPU threads the backend may use
"""

from leukemia_dtl.core.rule_runner import run_rule


def main(snakemake):
    from leukemia_dtl.model.export import export_run
    from leukemia_dtl.model.inputs import cache_dir_of

    export_run(
        model_path=snakemake.input.model,
        split_path=snakemake.input.split,
        cache_dir=cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        saved_model_folder=snakemake.output.saved_model,
        onnx_path=snakemake.output.onnx,
        check_path=snakemake.output.check,
        threads=snakemake.threads,
    )


# Converting and checking one model needs no GPU: on the CPU this job never shares one with a training job.
run_rule(snakemake, main, gpu=False)
