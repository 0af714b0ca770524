"""Rule plot_gradcam: Grad-CAM heat maps of a seeded panel of test cells, per outcome
(leukemia_dtl.model.gradcam.gradcam_figure).

input:   model (.keras), predictions (its prediction TSV of the test subset), cache_images, cache_index (the
         image cache files)
output:  png, pdf (the panel)
params:  cells_per_outcome (cells drawn per outcome: TP, FP, TN, FN), seed (of the draw), title (the panel's title)
threads: CPU threads the backend may use
"""

from leukemia_dtl.core.rule_runner import run_rule


def main(snakemake):
    from leukemia_dtl.model.gradcam import gradcam_figure
    from leukemia_dtl.model.inputs import cache_dir_of

    gradcam_figure(
        model_path=snakemake.input.model,
        predictions_path=snakemake.input.predictions,
        cache_dir=cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        cells_per_outcome=snakemake.params.cells_per_outcome,
        seed=snakemake.params.seed,
        title=snakemake.params.title,
        threshold=snakemake.params.threshold,
        png_path=snakemake.output.png,
        pdf_path=snakemake.output.pdf,
        threads=snakemake.threads,
    )


# A few cells' heat maps need no GPU: on the CPU this job never shares one with a training job.
run_rule(snakemake, main, gpu=False)
