"""The paper's training-time augmentation (section 2.2) as one layer that compiles with the training step.

The paper's Keras template used ``ImageDataGenerator``, which draws per image a horizontal flip, a rotation,
a shift and a zoom, composes them into one affine map and resamples the image once (bilinear, nearest
fill). Keras 3's ``RandomRotation``, ``RandomTranslation`` and ``RandomZoom`` draw from the same ranges but
set ``supports_jit=False`` (their TensorFlow kernel, ``ImageProjectiveTransformV3``, has no XLA
translation), so a model holding them never gets a compiled training step: ``jit_compile="auto"`` resolves
to False, which on JAX means the step runs op by op. :class:`RandomAffineAugmentation` does the
composition and the bilinear resampling with plain ``keras.ops`` (matrix products and gathers), which
every backend compiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import keras
from keras import ops

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import AUGMENTATION_OPTIONS


@keras.saving.register_keras_serializable(package="leukemia_dtl")
class RandomAffineAugmentation(keras.layers.Layer):
    """Per image: flip left-right with probability 1/2 (``horizontal_flip``), rotate by U(-r, r) degrees
    (``rotation_degrees``), shift by U(-s, s) of the width and, independently, of the height (``shift``), and
    zoom each axis by an independent U(1 - z, 1 + z) (``zoom``, as ImageDataGenerator's ``zoom_range``);
    in that order, as one affine map about the image centre. Pixels that the map takes from outside the
    image repeat the nearest edge pixel (ImageDataGenerator's ``fill_mode="nearest"``; C-NMC cells sit on
    black, so the border stays black). Active in training only: ``predict``/``evaluate`` pass images
    through unchanged.
    """

    def __init__(
        self,
        horizontal_flip: bool = False,
        rotation_degrees: float = 0.0,
        shift: float = 0.0,
        zoom: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.horizontal_flip = bool(horizontal_flip)
        self.rotation_degrees = float(rotation_degrees)
        self.shift = float(shift)
        self.zoom = float(zoom)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "horizontal_flip": self.horizontal_flip,
            "rotation_degrees": self.rotation_degrees,
            "shift": self.shift,
            "zoom": self.zoom,
            "seed": self.seed,
        }

    def compute_output_shape(self, input_shape):
        return input_shape

    def _uniform(self, batch_size, low: float, high: float):
        return keras.random.uniform((batch_size,), low, high, dtype="float32", seed=self.seed_generator)

    def sample_transforms(self, batch_size, height: int, width: int):
        """Per image, the six coefficients (a, b, c, d, tx, ty) of the map from an output pixel's offset
        (x, y) from the image centre to the input offset it samples, in pixels: (a x + b y + tx, c x + d y +
        ty). The map is flip . rotation . shift . zoom, so the image is flipped first and zoomed last, as
        ImageDataGenerator and the paper list them."""
        ones = ops.ones((batch_size,), dtype="float32")
        flip = ops.where(self._uniform(batch_size, 0.0, 1.0) < 0.5, -ones, ones) if self.horizontal_flip else ones
        angle = self._uniform(batch_size, -1.0, 1.0) * (self.rotation_degrees * math.pi / 180)
        shift_x, shift_y = (self._uniform(batch_size, -self.shift, self.shift) * side for side in (width, height))
        zoom_x, zoom_y = (self._uniform(batch_size, 1 - self.zoom, 1 + self.zoom) for _ in "xy")
        cos, sin = ops.cos(angle), ops.sin(angle)
        # flip @ rotation @ (shift, then zoom): [[f, 0], [0, 1]] @ [[cos, -sin], [sin, cos]] @ (z p + t)
        return ops.stack(
            [
                flip * cos * zoom_x,
                -flip * sin * zoom_y,
                sin * zoom_x,
                cos * zoom_y,
                flip * (cos * shift_x - sin * shift_y),
                sin * shift_x + cos * shift_y,
            ],
            axis=1,
        )

    # False by default: Keras records the resolved value in a saved model's graph, and a plain call of the
    # classifier (model.export, Grad-CAM) must not augment.
    def call(self, images, training=False):
        if not training:
            return images
        height, width, channels = images.shape[1:]
        batch_size = ops.shape(images)[0]
        # One (batch, 1, 1) coefficient each, to broadcast over the pixel grid.
        transforms = ops.reshape(self.sample_transforms(batch_size, height, width), (batch_size, 6, 1, 1))
        a, b, c, d, tx, ty = (transforms[:, index] for index in range(6))
        rows, columns = ops.meshgrid(
            ops.arange(height, dtype="float32") - (height - 1) / 2,
            ops.arange(width, dtype="float32") - (width - 1) / 2,
            indexing="ij",
        )
        # Clamping the sampled position to the image is the nearest fill, also for bilinear sampling.
        x = ops.clip(a * columns + b * rows + tx + (width - 1) / 2, 0, width - 1)
        y = ops.clip(c * columns + d * rows + ty + (height - 1) / 2, 0, height - 1)
        x0, y0 = ops.floor(x), ops.floor(y)
        x1, y1 = ops.minimum(x0 + 1, width - 1), ops.minimum(y0 + 1, height - 1)
        flat = ops.reshape(images, (batch_size, height * width, channels))

        def gather(ys, xs):
            index = ops.reshape(ops.cast(ys * width + xs, "int32"), (batch_size, height * width, 1))
            return ops.take_along_axis(flat, ops.repeat(index, channels, axis=2), axis=1)

        weight_x = ops.reshape(x - x0, (batch_size, height * width, 1))
        weight_y = ops.reshape(y - y0, (batch_size, height * width, 1))
        weight_x, weight_y = ops.cast(weight_x, flat.dtype), ops.cast(weight_y, flat.dtype)
        top = gather(y0, x0) * (1 - weight_x) + gather(y0, x1) * weight_x
        bottom = gather(y1, x0) * (1 - weight_x) + gather(y1, x1) * weight_x
        return ops.reshape(top * (1 - weight_y) + bottom * weight_y, (batch_size, height, width, channels))


def augmentation_layers(augmentation: Mapping | None) -> list[keras.layers.Layer]:
    """The paper's augmentation as the model's first layers: one :class:`RandomAffineAugmentation`, or none.

    ``augmentation`` keys: horizontal_flip (bool), rotation_degrees (+-degrees), shift (fraction of
    height/width), zoom (+-fraction per axis, as ImageDataGenerator's zoom_range). A false or zero value
    leaves that transform out; ``None`` or all off means no augmentation layer.
    """
    options = dict(augmentation or {})
    unknown = sorted(set(options) - set(AUGMENTATION_OPTIONS))
    if unknown:
        raise UserError(f"Unknown augmentation option(s) {unknown}; allowed: {list(AUGMENTATION_OPTIONS)}.")
    if not any(options.values()):
        return []
    return [RandomAffineAugmentation(**options, name="augment")]
