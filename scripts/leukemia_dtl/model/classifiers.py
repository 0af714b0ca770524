"""The paper's two classifiers (section 2.4) as plain, backend-neutral Keras 3 models.

Every model takes RGB images with pixel values 0..255 (any numeric dtype; the model casts) and runs, in
order: augmentation (active only in training, Keras switches it off in ``predict``/``evaluate``), input
normalisation, the frozen ``keras.applications`` backbone, and the paper's head. The head's last layer is the
paper's 2-unit Dense without its activation: the model outputs the logits z, in the vocabulary's class order
``CLASS_NAMES`` = [HEM, ALL] (ALL is the positive class). The loss is softmax cross-entropy on z
(:func:`compile_classifier`), which is what TensorFlow trained for both of the paper's heads, and the one
probability read anywhere is softmax(z)[ALL] (``inference.probability_of_all``), on every Keras backend.

Adding a third backbone takes one ``BACKBONES`` entry: its ``keras.applications`` constructor, the input
normalisation it expects (``normalization: model``), its head and its ImageNet ``notop`` weight file.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import (
    EFFICIENTNETB3,
    IMAGENET_WEIGHT_FILES,
    OPTIMIZERS,
    VGG19,
)
from leukemia_dtl.model.augmentation import augmentation_layers


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


@keras.saving.register_keras_serializable(package="leukemia_dtl")
class InferenceMode(keras.layers.Wrapper):
    """Runs the wrapped base in inference mode, also while the classifier trains.

    Keras 3 hands the outer call's ``training`` down into a nested model, over a ``training=False`` given
    where the base is called (Functional's ``operation_fn``). During ``fit`` a frozen EfficientNet-B3 then
    runs its stochastic-depth Dropout layers, so the head trains on noisy features it never sees in
    ``predict``. Called from inside a layer, ``training=False`` holds: the base computes what it computes at
    inference (BatchNormalization statistics, no dropout), as Keras's transfer-learning guide intends.
    """

    def call(self, inputs):
        return self.layer(inputs, training=False)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


OUTPUT_LAYER = "predictions"


def logits_layer() -> keras.layers.Dense:
    """The paper's 2-unit output Dense, giving the logits z its activation would act on.

    Section 2.4.1 writes sigmoid, 2.4.2 softmax; with categorical cross-entropy, TensorFlow's Keras (the
    paper's, and Keras 3 on TensorFlow) trained both as softmax cross-entropy on z, reading the logits behind
    the activation. Keras on JAX and PyTorch computes the loss from the activation's values instead, which
    for two sigmoids is another objective (docs/model_mapping.md). Without the activation in the model, the
    loss (``from_logits=True``) and the probability are softmax(z) on every backend. float32 under mixed
    precision too, so the loss and the probability come from float32 logits.
    """
    return keras.layers.Dense(2, dtype="float32", name=OUTPUT_LAYER)


def vgg19_head(*, dropout: float) -> list[keras.layers.Layer]:
    """Section 2.4.1 after the base's GlobalMaxPooling2D (7x7x512 -> 512): Dropout -> Dense(2) (logits)."""
    return [keras.layers.Dropout(dropout, name="dropout"), logits_layer()]


def efficientnetb3_head(*, dropout: float, dense_units: int = 256) -> list[keras.layers.Layer]:
    """Section 2.4.2 on the max-pooled base: BatchNormalization -> Dense(relu) -> Dropout -> Dense(2) (logits)."""
    return [
        keras.layers.BatchNormalization(name="batch_normalization"),
        keras.layers.Dense(dense_units, activation="relu", name="dense"),
        keras.layers.Dropout(dropout, name="dropout"),
        logits_layer(),
    ]


def apply_layers(layers: list[keras.layers.Layer], inputs):
    for layer in layers:
        inputs = layer(inputs)
    return inputs


# Images per forward pass of the calibration: peak memory follows this, not the sample size (at 224 px an
# EfficientNet-B3 batch of 16 peaks near 0.4 GB above the model's own memory on the CPU).
CALIBRATION_BATCH_SIZE = 16


def channel_statistics(
    activations_of: keras.Model, images: np.ndarray, batch_size: int = CALIBRATION_BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance (float64) of ``activations_of``'s output over ``images`` and every position.

    ``images`` (0..255 RGB, e.g. rows of the memory-mapped cache) pass ``batch_size`` at a time through a compiled
    predict step, and the statistics are merged as they come, so memory does not grow with the number of images.
    """
    count, mean, sum_of_squares = 0, 0.0, 0.0
    for first in range(0, len(images), batch_size):
        batch = np.asarray(images[first : first + batch_size], dtype="float32")
        size = len(batch)
        # A ragged last batch is padded with its own images, so the predict step is compiled for one shape.
        batch = np.resize(batch, (batch_size, *batch.shape[1:]))
        activations = keras.ops.convert_to_numpy(activations_of.predict_on_batch(batch))[:size]
        activations = activations.astype(np.float64).reshape(-1, activations.shape[-1])
        # Chan et al.'s pairwise update of mean and sum of squared deviations, exact for any batch split.
        batch_mean = activations.mean(axis=0)
        batch_sum_of_squares = ((activations - batch_mean) ** 2).sum(axis=0)
        delta = batch_mean - mean
        total = count + len(activations)
        mean = mean + delta * len(activations) / total
        sum_of_squares = sum_of_squares + batch_sum_of_squares + delta**2 * count * len(activations) / total
        count = total
    return mean, sum_of_squares / count


def _activations_model(base: keras.Model, tensor, normalization_layers: list[keras.layers.Layer]) -> keras.Model:
    """0..255 images -> ``tensor`` of ``base``, through ``normalization_layers`` as the classifier runs them."""
    images_in = keras.Input(shape=base.input_shape[1:])
    return keras.Model(images_in, keras.Model(base.input, tensor)(apply_layers(normalization_layers, images_in)))


def standardize_last_batch_normalization(
    base: keras.Model,
    images: np.ndarray,
    normalization_layers: list[keras.layers.Layer],
    batch_size: int = CALIBRATION_BATCH_SIZE,
) -> None:
    """Data-dependent initialisation of a random EfficientNet-B3: its last BatchNormalization standardises
    ``images``.

    A random BatchNormalization has mean 0 and variance 1, so in inference mode it passes activations
    unscaled, and through EfficientNet-B3's 26 blocks swish and squeeze-excitation shrink them to ~1e-7:
    a frozen random base passes the head features far below the head's BatchNormalization epsilon (1e-3),
    so nothing can learn. Setting the last BatchNormalization's statistics and scale from ``images`` makes
    the base's output unit-scale while leaving the random, nearly linear map in front of it untouched
    (re-normalising every layer would instead make the random network chaotic: features of a shifted image
    would no longer resemble the original's).
    """
    last = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)][-1]
    mean, variance = channel_statistics(_activations_model(base, last.input, normalization_layers), images, batch_size)
    last.moving_mean.assign(mean.astype("float32"))
    last.moving_variance.assign(variance.astype("float32"))
    # Inference computes gamma * (x - mean) / sqrt(variance + epsilon): this gamma cancels the epsilon.
    last.gamma.assign(np.sqrt((variance + last.epsilon) / np.maximum(variance, 1e-30)).astype("float32"))
    last.beta.assign(np.zeros_like(mean, dtype="float32"))


# The mean, in standard deviations, that calibrate_last_convolution gives each channel's pre-activation: a channel
# then fires (ReLU > 0) at about one position in six, as the units of a trained ReLU layer fire sparsely.
LAST_CONVOLUTION_MEAN = -1.0


def calibrate_last_convolution(
    base: keras.Model,
    images: np.ndarray,
    normalization_layers: list[keras.layers.Layer],
    batch_size: int = CALIBRATION_BATCH_SIZE,
) -> None:
    """Data-dependent initialisation of a random VGG-19: its last convolution's kernel and bias are rescaled and
    shifted so that, on ``images``, each channel's pre-activation has standard deviation 1 and mean
    :data:`LAST_CONVOLUTION_MEAN`.

    A random VGG-19 (Glorot-initialised, no BatchNormalization) passes pooled features of about 0.02 that vary
    across images by about a tenth of that. Their common part acts on the one-layer head as an intercept that all
    512 weights move at once, and Adamax, stepping each weight by about the learning rate, swings it past its
    optimum: on the demo the head ranked the test images well (ROC-AUC 0.8) but called every one ALL, at every
    learning rate from 0.001 to 0.3. Standardised pre-activations (mean 0) still left a common part of five times
    the features' spread, and training with augmentation stayed above the loss of always answering the class
    prior. Centred one standard deviation lower, a channel fires at about one position in six, and the pooled
    features (about 0.3 ± 0.2 on the demo) vary across images as much as they share: the head then learns. Only
    the last layer's scale and offset change; the random map before it stays as it is.
    """
    last = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    # The same convolution without its ReLU, sharing the kernel and bias: the statistics are the pre-activation's.
    linear = type(last).from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_linear"})
    pre_activation = linear(last.input)
    linear.set_weights(last.get_weights())
    mean, variance = channel_statistics(
        _activations_model(base, pre_activation, normalization_layers), images, batch_size
    )
    scale = 1 / np.sqrt(np.maximum(variance, 1e-30))
    kernel, bias = last.get_weights()
    calibrated_bias = (bias - mean) * scale + LAST_CONVOLUTION_MEAN
    last.set_weights([(kernel * scale).astype("float32"), calibrated_bias.astype("float32")])


@dataclass(frozen=True)
class Backbone:
    application: Callable[..., keras.Model]
    # Layers that turn 0..255 RGB into what the pretrained backbone was trained on (normalization: model).
    model_normalization: Callable[[], list[keras.layers.Layer]]
    # The head's layers, in order, on the base's pooled feature vector.
    head: Callable[..., list[keras.layers.Layer]]
    imagenet_notop: ImagenetWeightsFile
    # With random weights (weights: none), how the base is set from training images so that a frozen base passes
    # features a head can learn from (base, images, normalization layers); None leaves it as initialised.
    calibrate_random_base: Callable[..., None] | None = None


BACKBONES: dict[str, Backbone] = {
    VGG19: Backbone(
        application=keras.applications.VGG19,
        model_normalization=lambda: [CaffePreprocessing(name="caffe_preprocessing")],
        head=vgg19_head,
        imagenet_notop=ImagenetWeightsFile(
            file_name=IMAGENET_WEIGHT_FILES[VGG19],
            origin="https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + IMAGENET_WEIGHT_FILES[VGG19],
            md5="253f8cb515780f3b799900260a226db6",
        ),
        calibrate_random_base=calibrate_last_convolution,
    ),
    EFFICIENTNETB3: Backbone(
        application=keras.applications.EfficientNetB3,
        # Keras's EfficientNet takes 0..255 and rescales/normalises in its own stem.
        model_normalization=list,
        head=efficientnetb3_head,
        imagenet_notop=ImagenetWeightsFile(
            file_name=IMAGENET_WEIGHT_FILES[EFFICIENTNETB3],
            origin="https://storage.googleapis.com/keras-applications/" + IMAGENET_WEIGHT_FILES[EFFICIENTNETB3],
            md5="af6d107764bb5b1abb91932881670226",
        ),
        calibrate_random_base=standardize_last_batch_normalization,
    ),
}


def backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise UserError(f"Unknown model {name!r}; the workflow knows {sorted(BACKBONES)}. Fix `models` in the config.")
    return BACKBONES[name]


def input_normalization(backbone_name: str, normalization: str) -> list[keras.layers.Layer]:
    """Layers between augmentation and backbone.

    ``model``: what the pretrained backbone expects (VGG19: caffe BGR mean subtraction; EfficientNetB3:
    nothing, it rescales 0..255 itself). ``unit``: divide by 255, as the paper wrote; EfficientNetB3's stem
    then rescales by 1/255 once more, so it sees pixels in [0, 1/255] - a much smaller input than the one
    its ImageNet weights were trained on.
    """
    if normalization == "unit":
        return [keras.layers.Rescaling(1 / 255, name="unit_rescaling")]
    return backbone(backbone_name).model_normalization()


# Both bases end in the paper's global max pooling (include_top=False, pooling="max"): VGG-19's 7x7x512
# maps become the 512-vector of section 2.4.1, EfficientNet-B3's the 1536-vector its head's
# BatchNormalization takes (Keras's EfficientNetB3 with include_top=False, pooling="max": 11,183,665
# parameters with the paper's head, tests/model/test_classifiers.py). Parameter-free, so the head starts
# on a vector.
BASE_POOLING = "max"


def build_head(backbone_name: str, **head_options) -> list[keras.layers.Layer]:
    """The paper's head layers for ``backbone_name``; ``head_options`` checked against the head builder."""
    spec = backbone(backbone_name)
    head_parameters = inspect.signature(spec.head).parameters
    unknown = sorted(set(head_options) - set(head_parameters))
    if unknown:
        raise UserError(f"Model {backbone_name!r} has no option(s) {unknown}; its head takes {list(head_parameters)}.")
    return spec.head(**head_options)


def build_classifier(
    backbone_name: str,
    *,
    image_size: int = 224,
    weights: str | None = "imagenet",
    normalization: str = "model",
    freeze_base: bool = True,
    augmentation: Mapping | None = None,
    calibration_images=None,
    **head_options,
) -> keras.Model:
    """The paper's classifier on ``backbone_name``: augmentation -> normalisation -> base -> head.

    ``weights``: "imagenet" (from the Keras cache, ``$KERAS_HOME/models``) or "none"/None (random init).
    ``calibration_images`` (0..255 RGB, a training sample): with ``weights`` "none", the random base is set from
    them as its backbone's ``calibrate_random_base`` says (VGG-19: :func:`calibrate_last_convolution`,
    EfficientNet-B3: :func:`standardize_last_batch_normalization`).
    ``head_options`` go to the backbone's head builder (``dropout``; ``dense_units`` for EfficientNetB3).
    """
    # The head is made first, so its initial weights and dropout seeds depend on the random seed alone:
    # build_head_model then reproduces them exactly (the tuning fast path relies on it).
    head = build_head(backbone_name, **head_options)
    shape = (image_size, image_size, 3)
    images = keras.Input(shape=shape, name="image")
    normalization_layers = input_normalization(backbone_name, normalization)
    x = apply_layers(augmentation_layers(augmentation) + normalization_layers, images)
    base = backbone(backbone_name).application(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=shape,
        pooling=BASE_POOLING,
    )
    calibrate = backbone(backbone_name).calibrate_random_base
    if weights != "imagenet" and calibration_images is not None and calibrate is not None:
        calibrate(base, calibration_images, normalization_layers)
    # Inference mode also if the base is unfrozen (Keras's transfer-learning guidance), so its ImageNet (or
    # calibrated) BatchNormalization statistics stay intact.
    base = InferenceMode(base, name=base.name)
    base.trainable = not freeze_base
    features = base(x)
    return keras.Model(images, apply_layers(head, features), name=f"{backbone_name}_classifier")


def build_head_model(backbone_name: str, feature_size: int, **head_options) -> keras.Model:
    """The head alone, on precomputed base features; with the same seed set before, its initial weights
    and dropout seeds equal those of :func:`build_classifier`'s head."""
    features = keras.Input(shape=(feature_size,), name="features")
    head = build_head(backbone_name, **head_options)
    return keras.Model(features, apply_layers(head, features), name=f"{backbone_name}_head")


def base_position(model: keras.Model) -> int:
    """Where the base (its :class:`InferenceMode` wrapper) sits in ``model.layers`` of a classifier built by
    :func:`build_classifier`."""
    (base_at,) = [index for index, layer in enumerate(model.layers) if isinstance(layer, InferenceMode)]
    return base_at


def feature_extractor(model: keras.Model) -> keras.Model:
    """Images -> the base's pooled features, from a classifier built by :func:`build_classifier`."""
    base_at = base_position(model)
    # The head's first layer takes the base's output as the classifier's graph has it.
    return keras.Model(model.input, model.layers[base_at + 1].input, name=f"{model.layers[base_at].name}_features")


def layers_to_fine_tune(model: keras.Model, layers: int, setting: str = "fine_tune.layers") -> list[keras.layers.Layer]:
    """The top ``layers`` layers of the base that fine-tuning trains, counting only layers that hold weights,
    BatchNormalization excepted (it stays frozen, as Keras's transfer-learning guide says: the
    :class:`InferenceMode` wrapper runs it on its stored statistics, and training its scale and offset on
    top of statistics that no longer move would shift every feature the head learned on). Pooling,
    activation and other weightless layers are not counted, so ``layers: 4`` on VGG-19 is block 5's four
    convolutions, whatever pooling ends the base.

    Errors name ``setting``, the config key that gave ``layers``; call it before training starts, so a
    wrong count stops the run before the frozen phase.
    """
    wrapper = model.layers[base_position(model)]
    trainable = [
        layer
        for layer in wrapper.layer.layers
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not 1 <= layers <= len(trainable):
        raise UserError(
            f"{setting} is {layers}, but the base {wrapper.name} has {len(trainable)} layers with weights to "
            f"fine-tune (BatchNormalization stays frozen); set it between 1 and {len(trainable)}."
        )
    return trainable[len(trainable) - layers :]


def unfreeze_for_fine_tuning(model: keras.Model, layers: list[keras.layers.Layer]) -> None:
    """Makes ``layers`` (from :func:`layers_to_fine_tune`) the only trainable layers of the base; the head
    stays as it is. Compile the model again afterwards: Keras builds its training step from the trainable
    state at compile time."""
    wrapper = model.layers[base_position(model)]
    # The wrapper's trainable flag gates the whole base: set it, then each base layer's own.
    wrapper.trainable = True
    unfrozen = {id(layer) for layer in layers}
    for layer in wrapper.layer.layers:
        layer.trainable = id(layer) in unfrozen


def compile_classifier(
    model: keras.Model, *, optimizer: str = "adamax", learning_rate: float = 0.001, jit_compile: bool | str = "auto"
) -> None:
    """Categorical cross-entropy for both heads (section 2.4.3) on the model's logits, accuracy (the argmax of
    the logits, which is the argmax of their softmax), optimizer by name.

    ``from_logits=True`` computes softmax cross-entropy from z on every backend: the objective TensorFlow
    trained for the paper, now also on JAX and PyTorch (``tests/model/test_backend_equivalence.py``).
    ``jit_compile="auto"``: Keras turns XLA off on CPU-only TensorFlow (about 10x slower there).
    The accuracy is a metric object rather than the name "accuracy": Keras builds a named metric inside the first
    traced train step, and a step that creates variables is traced a second time by TensorFlow (7 of the 32 s of CPU
    of an EfficientNet-B3 demo training job, with the same history and weights either way).
    """
    model.compile(
        optimizer=getattr(keras.optimizers, OPTIMIZERS[optimizer])(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
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
    """Load a saved classifier (importing this module registered its custom layers); UserError for a model
    whose output layer applies an activation, as models saved by versions before the logits head did: its
    outputs are not the logits every probability here is read from, and rescoring them by another rule would
    change what was trained without saying so."""
    model = keras.saving.load_model(path)
    output = model.layers[-1]
    activation = getattr(output, "activation", None)
    if output.name != OUTPUT_LAYER or activation not in (None, keras.activations.linear):
        described = getattr(activation, "__name__", type(output).__name__)
        raise UserError(
            f"{path} ends in {described!r} ({output.name}), not the logits of the current classifiers: it was "
            "saved by an earlier version of this workflow, whose VGG-19 probability depended on the Keras backend. "
            "Retrain it: rerun Snakemake, which retrains models saved before this change (the train_model rule's "
            "model_format changed), or delete the file and its run's outputs."
        )
    return model
