"""Grad-CAM (Selvaraju et al. 2017): where in a cell the trained classifier found the evidence for its call. The
panel that shows it for a seeded draw of test cells is drawn by the evaluation stage
(:mod:`leukemia_dtl.evaluate.gradcam_figure`); rule plot_gradcam hands it these maps.

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
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import CLASS_NAMES
from leukemia_dtl.model import backend
from leukemia_dtl.model.classifiers import base_position, load_model
from leukemia_dtl.model.inputs import ImageCache, class_indices

log = logging.getLogger("leukemia_dtl")

# Backends whose automatic differentiation gradcam_heatmaps uses.
GRADIENT_BACKENDS = ("tensorflow", "jax", "torch")
# Images per gradient pass: bounds memory at 224 px whatever the panel's size.
GRADCAM_BATCH_SIZE = 16
# The split must give the model's own logits; mixed precision computes both in float16 up to the float32 output
# layer. Relative to the logit's size (plus 1), as logits are not bounded.
LOGIT_TOLERANCE = 1e-3


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


@dataclass(frozen=True)
class CellHeatmaps:
    """Grad-CAM of some cells of the image cache: their images and maps, in the order asked for, and the layer the
    maps come from with its map resolution."""

    images: np.ndarray
    heatmaps: np.ndarray
    layer_name: str
    map_shape: tuple[int, int]


def cell_heatmaps(
    model_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    paths: Sequence[str],
    calls: Sequence[str],
    *,
    threads: int | None = None,
) -> CellHeatmaps:
    """The cached images at ``paths`` and their Grad-CAM maps under the model at ``model_path``, each for the
    log-odds of the class it is called (``calls``, ALL or HEM). ``threads`` limits the backend's CPU threads (the
    rule's threads)."""
    if threads:
        backend.limit_cpu_threads(threads)
    model = load_model(model_path)
    images = ImageCache.open(cache_dir, model.input_shape[1]).images_for(paths)
    split = GradCamSplit.of(model)
    heatmaps = gradcam_heatmaps(split, images, class_indices(calls))
    log.info("Grad-CAM on %s (%dx%d maps) of %d cells", split.layer_name, *split.map_shape, len(images))
    return CellHeatmaps(images, heatmaps, split.layer_name, split.map_shape)
