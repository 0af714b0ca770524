"""Rule plot_gradcam: Grad-CAM heat maps of a seeded panel of test cells, per outcome: the cells drawn from the
predictions and the panel drawn by the evaluation stage (leukemia_dtl.evaluate.gradcam_figure), their heat maps
computed by the model stage (leukemia_dtl.model.gradcam.cell_heatmaps).

input:   model (.keras), predictions (its prediction TSV of the test subset), cache_images, cache_index (the
         image cache files)
output:  png, pdf (the panel)
params:  cells_per_outcome (cells drawn per outcome: TP, FP, TN, FN), seed (of the draw), threshold (of the
         calls), title (the panel's title)
threads: CPU threads the backend may use
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.figure_style import save_figure
from leukemia_dtl.evaluate.gradcam_figure import gradcam_panel_cells, plot_gradcam_panel
from leukemia_dtl.evaluate.result_files import read_predictions


def main(snakemake):
    from leukemia_dtl.model.gradcam import cell_heatmaps
    from leukemia_dtl.model.inputs import cache_dir_of

    params = snakemake.params
    predictions = read_predictions(snakemake.input.predictions)
    cells = gradcam_panel_cells(predictions, params.cells_per_outcome, params.seed, threshold=params.threshold)
    gradcam = cell_heatmaps(
        snakemake.input.model,
        cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        cells["path"],
        cells["pred"],
        threads=snakemake.threads,
    )
    figure = plot_gradcam_panel(
        cells,
        gradcam.images,
        gradcam.heatmaps,
        title=params.title,
        layer_name=gradcam.layer_name,
        map_shape=gradcam.map_shape,
    )
    save_figure(figure, snakemake.output.png, snakemake.output.pdf)


# A few cells' heat maps need no GPU: on the CPU this job never shares one with a training job.
run_rule(snakemake, main, gpu=False)
