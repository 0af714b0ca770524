"""Grad-CAM (Selvaraju et al. 2017): where in a cell the trained classifier found the evidence for its call, and
the seeded panel of test cells that shows it for each outcome (true and false positives and negatives).

Grad-CAM weighs each channel ``k`` of a convolutional layer's maps ``A_k`` by the spatial mean of the gradient
of a class score with respect to it, and keeps ``ReLU(sum_k w_k A_k)``. Here the layer is the base's last
Conv2D (VGG-19: block5_conv4, EfficientNet-B3: top_conv) and the score is the log-odds of the class c the model
called, ``z_c - z_other``, from the logits z the model outputs. Selvaraju et al. take the called class's score
before the output activation, ``z_c`` alone; but a softmax over two logits depends on their
difference only (adding the same amount to both changes no probability), so ``z_c`` alone also follows a
direction the model's decision ignores. ``z_c - z_other`` is the logit of softmax(z)[c], the P(ALL) the workflow
reports (1 - P(ALL) for a HEM call). Each map is resized bilinearly to the image and scaled to [0, 1] per image.
At small image sizes the last conv maps are coarse (1x1 or 2x2 at 32 px), and the panel's title says so.

The gradients come from the Keras backend's own automatic differentiation: TensorFlow's GradientTape,
``jax.value_and_grad`` or ``torch.autograd.grad``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from leukemia_dtl.core.decisions import class_calls
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import CLASS_NAMES, GRADCAM_OUTCOMES, NEGATIVE_CLASS, POSITIVE_CLASS
from leukemia_dtl.evaluate.figures import new_figure, save_figure, styled
from leukemia_dtl.evaluate.result_files import read_predictions
from leukemia_dtl.model import backend
from leukemia_dtl.model.classifiers import base_position, load_model
from leukemia_dtl.model.inputs import ImageCache, class_indices

log = logging.getLogger("leukemia_dtl")

# (label, pred) -> outcome, ALL being the positive class; the panel's rows follow GRADCAM_OUTCOMES.
OUTCOME_OF = {
    (POSITIVE_CLASS, POSITIVE_CLASS): "TP",
    (NEGATIVE_CLASS, POSITIVE_CLASS): "FP",
    (NEGATIVE_CLASS, NEGATIVE_CLASS): "TN",
    (POSITIVE_CLASS, NEGATIVE_CLASS): "FN",
}
OUTCOME_DESCRIPTIONS = {outcome: f"{label} called {pred}" for (label, pred), outcome in OUTCOME_OF.items()}
# Backends whose automatic differentiation gradcam_heatmaps uses.
GRADIENT_BACKENDS = ("tensorflow", "jax", "torch")
# Images per gradient pass: bounds memory at 224 px whatever the panel's size.
GRADCAM_BATCH_SIZE = 16
# The split must give the model's own logits; mixed precision computes both in float16 up to the float32 output
# layer. Relative to the logit's size (plus 1), as logits are not bounded.
LOGIT_TOLERANCE = 1e-3
HEATMAP_COLORMAP = "jet"
HEATMAP_ALPHA = 0.45
# The predictions the panel draws from: the rule passes a test-subset prediction table.
PANEL_SUBSET = "test"


@dataclass(frozen=True)
class GradCamSplit:
    """A classifier of ``classifiers.build_classifier`` cut at its base's last Conv2D: images -> that layer's maps
    (augmentation, normalisation, the base up to the layer), and maps -> the logits z the model outputs (the rest
    of the base, then the head)."""

    model: keras.Model
    layer_name: str
    images_to_maps: keras.Model
    maps_to_features: keras.Model
    features_to_logits: keras.Model

    @classmethod
    def of(cls, model: keras.Model) -> GradCamSplit:
        base_at = base_position(model)
        wrapper = model.layers[base_at]
        base = wrapper.layer
        convolutions = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
        if not convolutions:
            raise UserError(
                f"The base {base.name} of {model.name} has no Conv2D layer, so Grad-CAM has no maps to use."
            )
        last_convolution = convolutions[-1]
        base_to_maps = keras.Model(base.input, last_convolution.output)
        return cls(
            model=model,
            layer_name=last_convolution.name,
            # From the classifier's own input, so its augmentation and normalisation layers run as in predict.
            images_to_maps=keras.Model(model.input, base_to_maps(wrapper.input)),
            maps_to_features=keras.Model(last_convolution.output, base.output),
            features_to_logits=keras.Model(wrapper.output, model.output),
        )

    @property
    def map_shape(self) -> tuple[int, int]:
        return tuple(self.images_to_maps.output.shape[1:3])

    def maps(self, images):
        # training=False overrides a training=True that an older saved graph recorded for its augmentation.
        return self.images_to_maps(images, training=False)

    def logits(self, maps):
        """The model's logits z (class order HEM, ALL) from the last conv maps."""
        return self.features_to_logits(self.maps_to_features(maps, training=False), training=False)

    def check_reproduces_the_model(self, images, logits) -> None:
        """UserError unless ``logits``, the split's for ``images``, are the model's own outputs for them."""
        expected = keras.ops.convert_to_numpy(self.model(images, training=False)).astype(np.float64)
        difference = np.abs(keras.ops.convert_to_numpy(logits).astype(np.float64) - expected)
        if not (difference <= LOGIT_TOLERANCE * (1 + np.abs(expected))).all():
            raise UserError(
                f"Grad-CAM's split of {self.model.name} at {self.layer_name} gives logits up to "
                f"{float(difference.max()):.3g} away from the model's own, so its maps would not explain this model. "
                "Grad-CAM needs a classifier built by this workflow (augmentation, normalisation, base, head); "
                "retrain the model with it."
            )


def _log_odds_gradients(split: GradCamSplit, maps, chosen: np.ndarray):
    """The logits, and the gradient with respect to ``maps`` of each image's log-odds of its ``chosen`` class,
    ``z_chosen - z_other``."""
    # +1 on the chosen class's logit, -1 on the other's: a row of logits times its signs sums to its log-odds.
    signs = np.where(chosen[:, None] == np.arange(len(CLASS_NAMES)), 1.0, -1.0).astype("float32")

    def log_odds_total(maps):
        logits = split.logits(maps)
        # Each image's logits depend on its own maps only, so the gradient of the sum is each image's own.
        return keras.ops.sum(keras.ops.multiply(logits, signs)), logits

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(maps)
            total, logits = log_odds_total(maps)
        return logits, tape.gradient(total, maps)
    if keras.backend.backend() == "jax":
        import jax

        (_, logits), gradients = jax.value_and_grad(log_odds_total, has_aux=True)(maps)
        return logits, gradients
    if keras.backend.backend() == "torch":
        import torch

        # A new leaf of the autograd graph: the backward pass starts at the maps, not at the weights behind them.
        maps = maps.detach().requires_grad_()
        total, logits = log_odds_total(maps)
        (gradients,) = torch.autograd.grad(total, maps)
        return logits, gradients
    raise UserError(
        f"Grad-CAM needs the gradients of the {keras.backend.backend()} backend, which it does not implement; run "
        f"the plot_gradcam rule with KERAS_BACKEND set to one of {', '.join(GRADIENT_BACKENDS)}."
    )


def gradcam_heatmaps(split: GradCamSplit, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Grad-CAM maps (N, S, S) in [0, 1] of ``images`` (N, S, S, 3, 0..255) for the log-odds of the class index of
    each image in ``classes`` (0 HEM, 1 ALL), on ``split``'s layer, resized bilinearly to the image size and scaled
    to its maximum (a map without positive evidence stays zero)."""
    classes = np.asarray(classes, dtype=np.int64)
    heatmaps = []
    for first in range(0, len(images), GRADCAM_BATCH_SIZE):
        batch = np.asarray(images[first : first + GRADCAM_BATCH_SIZE], dtype="float32")
        maps = split.maps(batch)
        logits, gradients = _log_odds_gradients(split, maps, classes[first : first + GRADCAM_BATCH_SIZE])
        split.check_reproduces_the_model(batch, logits)
        maps = keras.ops.convert_to_numpy(maps).astype(np.float64)
        channel_weights = keras.ops.convert_to_numpy(gradients).astype(np.float64).mean(axis=(1, 2))
        heat = np.maximum(np.einsum("nhwk,nk->nhw", maps, channel_weights), 0.0)
        resized = keras.ops.image.resize(heat[..., None].astype("float32"), batch.shape[1:3], interpolation="bilinear")
        # Bilinear interpolation is a convex combination, so the resized map stays >= 0 (zero where the map had
        # no heat). Scaled after resizing, so every map with heat reaches exactly 1 in the figure.
        heat = keras.ops.convert_to_numpy(resized)[..., 0].astype(np.float64)
        peaks = heat.max(axis=(1, 2), keepdims=True)
        heatmaps.append(np.divide(heat, peaks, out=np.zeros_like(heat), where=peaks > 0))
    return np.concatenate(heatmaps) if heatmaps else np.zeros((0, *images.shape[1:3]))


def gradcam_panel_cells(
    predictions: pd.DataFrame, cells_per_outcome: int, seed: int, *, threshold: float
) -> pd.DataFrame:
    """The panel's cells: up to ``cells_per_outcome`` rows of ``predictions`` per outcome (TP, FP, TN, FN from
    ``label`` and the call at ``threshold``, as every table and figure calls; ``pred`` becomes that call), drawn
    with ``numpy.random.default_rng(seed)`` in GRADCAM_OUTCOMES order from the rows sorted by path, so the draw
    does not depend on the table's row order. Returns them with an ``outcome``
    column, grouped in GRADCAM_OUTCOMES order and by path within each; an outcome without rows is absent."""
    if cells_per_outcome < 1:
        raise UserError(f"gradcam.cells_per_outcome is {cells_per_outcome}; set it to 1 or more.")
    calls = class_calls(predictions["p_all"], threshold)
    outcomes = [OUTCOME_OF.get(pair) for pair in zip(predictions["label"], calls, strict=True)]
    if None in outcomes:
        raise UserError(
            f"Grad-CAM's predictions hold labels or calls other than {POSITIVE_CLASS} and {NEGATIVE_CLASS}; "
            "rerun the prediction step that wrote them."
        )
    cells = predictions.assign(pred=calls, outcome=outcomes).sort_values("path", kind="stable", ignore_index=True)
    rng = np.random.default_rng(seed)
    drawn = []
    for outcome in GRADCAM_OUTCOMES:
        candidates = cells[cells["outcome"] == outcome]
        picked = rng.choice(len(candidates), size=min(cells_per_outcome, len(candidates)), replace=False)
        drawn.append(candidates.iloc[np.sort(picked)])
    return pd.concat(drawn, ignore_index=True)


def _bare(axes) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)


@styled
def plot_gradcam_panel(
    cells: pd.DataFrame,
    images: np.ndarray,
    heatmaps: np.ndarray,
    *,
    title: str,
    layer_name: str,
    map_shape: tuple[int, int],
) -> Figure:
    """One row per outcome in GRADCAM_OUTCOMES order: each cell of ``cells`` (from :func:`gradcam_panel_cells`,
    ``images`` and ``heatmaps`` in its row order) as the image and, beside it, its heat map over the image,
    titled with the subject and p(ALL). An outcome without cells gets a row that says so; the title names the
    layer and its map resolution, which at small image sizes is a handful of cells."""
    columns = max(cells["outcome"].value_counts(), default=1)
    figure = new_figure(figsize=(3.0 * columns + 1.2, 2.2 * len(GRADCAM_OUTCOMES) + 0.8))
    grid = figure.subplots(len(GRADCAM_OUTCOMES), 2 * columns, squeeze=False)
    heat_image = None
    for outcome, row in zip(GRADCAM_OUTCOMES, grid, strict=True):
        for axes in row:
            _bare(axes)
        row[0].set_ylabel(f"{outcome}\n({OUTCOME_DESCRIPTIONS[outcome]})")
        positions = np.flatnonzero(cells["outcome"].to_numpy() == outcome)
        if not len(positions):
            row[0].text(0.0, 0.5, f"no {outcome} in the {PANEL_SUBSET} subset", transform=row[0].transAxes, va="center")
        for column, position in enumerate(positions):
            cell = cells.iloc[position]
            image_axes, heat_axes = row[2 * column], row[2 * column + 1]
            image_axes.imshow(images[position])
            image_axes.set_title(f"{cell['subject']}\np(ALL) {cell['p_all']:.2f}", fontsize=9)
            heat_axes.imshow(images[position])
            heat_image = heat_axes.imshow(
                heatmaps[position], cmap=HEATMAP_COLORMAP, alpha=HEATMAP_ALPHA, vmin=0.0, vmax=1.0
            )
            heat_axes.set_title(f"Grad-CAM, {cell['pred']} log-odds", fontsize=9)
        for axes in row[2 * len(positions) :]:
            if axes is not row[0]:
                axes.set_axis_off()
    if heat_image is not None:
        figure.colorbar(heat_image, ax=grid, label="Grad-CAM (scaled per image)", shrink=0.5)
    height, width = map_shape
    figure.suptitle(f"{title}\nGrad-CAM on {layer_name}, {height}x{width} map at {images.shape[1]} px")
    return figure


def gradcam_figure(
    model_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    cells_per_outcome: int,
    seed: int,
    title: str,
    png_path: str | os.PathLike,
    pdf_path: str | os.PathLike,
    *,
    threshold: float,
    threads: int | None = None,
) -> pd.DataFrame:
    """Draw the panel of :func:`gradcam_panel_cells` from a prediction table of the model at ``model_path``, with
    each cell's Grad-CAM of the log-odds of the class called at ``threshold``, and write it as PNG and PDF;
    return the panel's cells. ``threads`` limits the backend's CPU threads (the rule's threads)."""
    if threads:
        backend.limit_cpu_threads(threads)
    cells = gradcam_panel_cells(read_predictions(predictions_path), cells_per_outcome, seed, threshold=threshold)
    model = load_model(model_path)
    cache = ImageCache.open(cache_dir, model.input_shape[1])
    images = cache.images_for(cells["path"])
    split = GradCamSplit.of(model)
    heatmaps = gradcam_heatmaps(split, images, class_indices(cells["pred"]))
    figure = plot_gradcam_panel(
        cells, images, heatmaps, title=title, layer_name=split.layer_name, map_shape=split.map_shape
    )
    save_figure(figure, png_path, pdf_path)
    log.info(
        "Grad-CAM on %s (%dx%d maps) of %d cells: %s",
        split.layer_name,
        *split.map_shape,
        len(cells),
        cells["outcome"].value_counts().reindex(GRADCAM_OUTCOMES, fill_value=0).to_dict(),
    )
    return cells
