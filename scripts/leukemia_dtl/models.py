"""The paper's two classifiers (section 2.4) as plain, backend-neutral Keras 3 models.

Every model takes RGB images with pixel values 0..255 (any numeric dtype; the model casts) and runs, in
order: augmentation (active only in training, Keras switches it off in ``predict``/``evaluate``), input
normalisation, the frozen ``keras.applications`` backbone, and the paper's head. Class order of the
2-unit output is ``CLASS_NAMES`` = [HEM, ALL]; ALL is the positive class.

Adding a third backbone takes one ``BACKBONES`` entry: its ``keras.applications`` constructor, the input
normalisation it expects (``normalization: model``), its head and its ImageNet ``notop`` weight file.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import keras

from leukemia_dtl.errors import UserError

CLASS_NAMES = ("HEM", "ALL")
NEGATIVE_CLASS, POSITIVE_CLASS = CLASS_NAMES

# ImageDataGenerator (behind the paper's Keras template) fills uncovered pixels with the nearest edge
# pixel; the Keras layers default to "reflect". C-NMC cells sit on black, so either keeps the border black.
AUGMENTATION_FILL_MODE = "nearest"


@dataclass(frozen=True)
class ImagenetWeightsFile:
    """An ImageNet ``notop`` weight file as ``keras.applications`` downloads it (see its source)."""

    file_name: str
    origin: str
    md5: str


@keras.saving.register_keras_serializable(package="leukemia_dtl")
class CaffePreprocessing(keras.layers.Layer):
    """``keras.applications.vgg19.preprocess_input`` as a layer: RGB->BGR, minus the ImageNet BGR mean.

    A layer (not a Lambda) so the saved ``.keras`` model reloads anywhere and runs on every backend.
    """

    IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)

    def call(self, images):
        bgr = keras.ops.flip(images, axis=-1)
        return bgr - keras.ops.convert_to_tensor(self.IMAGENET_BGR_MEAN, dtype=bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def vgg19_head(features, *, dropout: float):
    """Section 2.4.1: GlobalMaxPooling2D (7x7x512 -> 512) -> Dropout -> Dense(2, sigmoid)."""
    x = keras.layers.GlobalMaxPooling2D(name="global_max_pooling")(features)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 output keeps the loss stable under mixed precision.
    return keras.layers.Dense(2, activation="sigmoid", dtype="float32", name="predictions")(x)


def efficientnetb3_head(features, *, dropout: float, dense_units: int = 256):
    """Section 2.4.2 on the max-pooled base: BatchNormalization -> Dense(relu) -> Dropout -> Dense(2, softmax)."""
    x = keras.layers.BatchNormalization(name="batch_normalization")(features)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.layers.Dense(2, activation="softmax", dtype="float32", name="predictions")(x)


@dataclass(frozen=True)
class Backbone:
    application: Callable[..., keras.Model]
    # Layers that turn 0..255 RGB into what the pretrained backbone was trained on (normalization: model).
    model_normalization: Callable[[], list[keras.layers.Layer]]
    head: Callable
    imagenet_notop: ImagenetWeightsFile
    base_options: Mapping = field(default_factory=dict)


BACKBONES: dict[str, Backbone] = {
    "vgg19": Backbone(
        application=keras.applications.VGG19,
        model_normalization=lambda: [CaffePreprocessing(name="caffe_preprocessing")],
        head=vgg19_head,
        imagenet_notop=ImagenetWeightsFile(
            file_name="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            origin="https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            md5="253f8cb515780f3b799900260a226db6",
        ),
    ),
    "efficientnetb3": Backbone(
        application=keras.applications.EfficientNetB3,
        # Keras's EfficientNet takes 0..255 and rescales/normalises in its own stem.
        model_normalization=lambda: [],
        head=efficientnetb3_head,
        imagenet_notop=ImagenetWeightsFile(
            file_name="efficientnetb3_notop.h5",
            origin="https://storage.googleapis.com/keras-applications/efficientnetb3_notop.h5",
            md5="af6d107764bb5b1abb91932881670226",
        ),
        # include_top=False with pooling="max" gives the 1536-vector the head's BatchNormalization takes
        # (FACTS.md parameter counts).
        base_options={"pooling": "max"},
    ),
}

NORMALIZATIONS = ("model", "unit")
WEIGHTS = ("imagenet", "none")
AUGMENTATION_OPTIONS = ("horizontal_flip", "rotation_degrees", "shift", "zoom")
OPTIMIZERS = {
    "adamax": keras.optimizers.Adamax,
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
}


def backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise UserError(f"Unknown model {name!r}; the workflow knows {sorted(BACKBONES)}. Fix `models` in the config.")
    return BACKBONES[name]


def augmentation_layers(augmentation: Mapping | None) -> list[keras.layers.Layer]:
    """The paper's training-time augmentation (section 2.2) as Keras layers, in the paper's order.

    ``augmentation`` keys: horizontal_flip (bool), rotation_degrees (+-degrees), shift (fraction of
    height/width), zoom (+-fraction per axis, as ImageDataGenerator's zoom_range). A false or zero value
    leaves that layer out; ``None`` means no augmentation.
    """
    options = dict(augmentation or {})
    unknown = sorted(set(options) - set(AUGMENTATION_OPTIONS))
    if unknown:
        raise UserError(f"Unknown augmentation option(s) {unknown}; allowed: {list(AUGMENTATION_OPTIONS)}.")
    layers = []
    if options.get("horizontal_flip"):
        layers.append(keras.layers.RandomFlip("horizontal", name="augment_flip"))
    if options.get("rotation_degrees"):
        # RandomRotation takes a fraction of a full turn.
        layers.append(
            keras.layers.RandomRotation(
                options["rotation_degrees"] / 360, fill_mode=AUGMENTATION_FILL_MODE, name="augment_rotation"
            )
        )
    if options.get("shift"):
        layers.append(
            keras.layers.RandomTranslation(
                options["shift"], options["shift"], fill_mode=AUGMENTATION_FILL_MODE, name="augment_shift"
            )
        )
    if options.get("zoom"):
        layers.append(
            keras.layers.RandomZoom(
                options["zoom"], options["zoom"], fill_mode=AUGMENTATION_FILL_MODE, name="augment_zoom"
            )
        )
    return layers


def input_normalization(backbone_name: str, normalization: str) -> list[keras.layers.Layer]:
    """Layers between augmentation and backbone.

    ``model``: what the pretrained backbone expects (VGG19: caffe BGR mean subtraction; EfficientNetB3:
    nothing, it rescales 0..255 itself). ``unit``: divide by 255, as the paper wrote; EfficientNetB3's stem
    then rescales by 1/255 once more, so it sees pixels in [0, 1/255] - a much smaller input than the one
    its ImageNet weights were trained on.
    """
    if normalization == "model":
        return backbone(backbone_name).model_normalization()
    if normalization == "unit":
        return [keras.layers.Rescaling(1 / 255, name="unit_rescaling")]
    raise UserError(f"normalization must be one of {list(NORMALIZATIONS)}, not {normalization!r}.")


def build_classifier(
    backbone_name: str,
    *,
    image_size: int = 224,
    weights: str | None = "imagenet",
    normalization: str = "model",
    freeze_base: bool = True,
    augmentation: Mapping | None = None,
    **head_options,
) -> keras.Model:
    """The paper's classifier on ``backbone_name``: augmentation -> normalisation -> base -> head.

    ``weights``: "imagenet" (from the Keras cache, ``$KERAS_HOME/models``) or "none"/None (random init).
    ``head_options`` go to the backbone's head builder (``dropout``; ``dense_units`` for EfficientNetB3).
    """
    spec = backbone(backbone_name)
    weights = "none" if weights is None else str(weights)
    if weights not in WEIGHTS:
        raise UserError(f"weights must be one of {list(WEIGHTS)}, not {weights!r}.")
    head_parameters = inspect.signature(spec.head).parameters
    unknown = sorted(set(head_options) - set(head_parameters))
    if unknown:
        raise UserError(
            f"Model {backbone_name!r} has no option(s) {unknown}; its head takes {list(head_parameters)[1:]}."
        )

    shape = (image_size, image_size, 3)
    images = keras.Input(shape=shape, name="image")
    x = images
    for layer in augmentation_layers(augmentation) + input_normalization(backbone_name, normalization):
        x = layer(x)
    base = spec.application(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=shape,
        **spec.base_options,
    )
    base.trainable = not freeze_base
    # training=False keeps the base's BatchNormalization in inference mode, also if it is unfrozen
    # (Keras's transfer-learning guidance), so its ImageNet statistics stay intact.
    features = base(x, training=False)
    outputs = spec.head(features, **head_options)
    return keras.Model(images, outputs, name=f"{backbone_name}_classifier")


def build_vgg19_classifier(**options) -> keras.Model:
    """Section 2.4.1. ``options`` as for :func:`build_classifier`."""
    return build_classifier("vgg19", **options)


def build_efficientnetb3_classifier(**options) -> keras.Model:
    """Section 2.4.2. ``options`` as for :func:`build_classifier`."""
    return build_classifier("efficientnetb3", **options)


def compile_classifier(model: keras.Model, *, optimizer: str = "adamax", learning_rate: float = 0.001) -> None:
    """Categorical cross-entropy for both heads (section 2.4.3), accuracy, optimizer by name.

    On the sigmoid VGG head Keras's categorical cross-entropy first divides the two outputs by their sum,
    so it trains that normalised pair as the class distribution (prediction.py reads it the same way).
    ``jit_compile="auto"``: Keras turns XLA off on CPU-only TensorFlow (about 10x slower there).
    """
    if optimizer not in OPTIMIZERS:
        raise UserError(f"optimizer must be one of {sorted(OPTIMIZERS)}, not {optimizer!r}.")
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
        jit_compile="auto",
    )


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Save as ``.keras`` so that a killed job never leaves a complete-looking file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras picks the format from the suffix, so stage under a .keras name in a private directory.
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staged = staging / "model.keras"
        model.save(staged)
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a saved classifier; importing this module registered its custom layer."""
    return keras.saving.load_model(path)
