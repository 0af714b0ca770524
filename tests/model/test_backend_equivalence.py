"""One model, one probability, the same on every Keras backend (issue 22).

The classifiers output logits and train softmax cross-entropy on them; P(ALL) is softmax(z)[ALL]. With the same
weights and batch, TensorFlow, JAX and (where installed) PyTorch must give the same loss, the same weights after
one optimizer step and the same P(ALL). The sigmoid head the paper wrote gave two objectives: TensorFlow trained
softmax(z) through the logits its sigmoid attaches, JAX and PyTorch the sigmoids divided by their sum (loss 2.2529
against 1.0948 on one VGG-19 batch), and under JAX that objective collapsed or diverged on features of VGG-19's
scale. Each backend runs in a child process (tests/keras_backends.py), on a model saved here by TensorFlow.
"""

import keras
import numpy as np
import pytest

from keras_backends import backend_params, run_under_backend
from leukemia_dtl.model import classifiers
from model_stage_fixtures import TINY_BACKBONE, synthetic_cell

TOLERANCE = 1e-5
IMAGE_SIZE = 32
BATCH = 8
# Plain gradient descent makes the step proportional to the gradient (Adamax's first step is about
# learning_rate * sign(gradient) whatever the gradient's size), so equal steps mean equal gradients.
SGD_LEARNING_RATE = 0.5

# Under each backend: the loss of one training step and the weights after it with each optimizer named
# (gradient descent; the paper's Adamax), and P(ALL) of the untrained model, from the saved model and batch.
# Eagerly: the objective is what is compared, and tracing EfficientNet-B3's step costs a minute on two cores.
ONE_STEP = """
import json, sys
import keras, numpy as np
from leukemia_dtl.model import classifiers
from leukemia_dtl.model.inference import probability_of_all

model_path, batch_path, out_path, sgd_learning_rate, *optimizers = sys.argv[1:]
batch = np.load(batch_path)
results = {}
for optimizer in optimizers:
    model = classifiers.load_model(model_path)
    classifiers.compile_classifier(model, optimizer="adamax", learning_rate=0.001)
    if optimizer == "sgd":
        # The workflow's own loss object, with another optimizer.
        model.compile(optimizer=keras.optimizers.SGD(float(sgd_learning_rate)), loss=model.loss, metrics=["accuracy"])
    model.run_eagerly = True
    before = [keras.ops.convert_to_numpy(weight) for weight in model.trainable_weights]
    if optimizer == "sgd":
        results["p_all"] = probability_of_all(model.predict(batch["images"], verbose=0))
    loss, _ = model.train_on_batch(batch["images"], batch["labels"])
    results[f"{optimizer}_loss"] = np.float64(loss)
    steps = [keras.ops.convert_to_numpy(weight) - old for weight, old in zip(model.trainable_weights, before)]
    results[f"{optimizer}_step"] = np.concatenate([step.ravel() for step in steps])
np.savez(out_path, **results)
print(json.dumps({"backend": keras.backend.backend()}))
"""


def synthetic_batch(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(BATCH) % 2
    images = np.stack([synthetic_cell(rng, IMAGE_SIZE, ("HEM", "ALL")[label]) for label in labels])
    return {"images": images.astype("float32"), "labels": np.eye(2, dtype="float32")[labels]}


ARCHITECTURES = {
    "vgg19": {"dropout": 0.0},
    "efficientnetb3": {"dropout": 0.0, "dense_units": 256},
    "tiny": {"dropout": 0.0},
}
# The optimizers stepped per architecture: Adamax's update is Keras's own code on every backend, so it is checked
# on the two fast models; the gradient (the SGD step) on all three.
OPTIMIZERS = {"vgg19": ("sgd", "adamax"), "efficientnetb3": ("sgd",), "tiny": ("sgd", "adamax")}
# Adamax divides by max(|gradient|) + 1e-7, so where a gradient is near zero its step magnifies float32 rounding:
# steps are compared where the gradient is at least this large (and that is nearly every weight).
ADAMAX_SMALLEST_GRADIENT = 1e-6


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def saved_classifier(request, tmp_path_factory):
    """(architecture, saved model, batch file, folder): a random classifier (no dropout, no augmentation, so one
    step is the same computation on every backend), its EfficientNet-B3 base calibrated on the batch."""
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    batch = synthetic_batch()
    np.savez(folder / "batch.npz", **batch)
    keras.utils.set_random_seed(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(classifiers.BACKBONES, "tiny", TINY_BACKBONE)
        model = classifiers.build_classifier(
            name, image_size=IMAGE_SIZE, weights="none", calibration_images=batch["images"], **ARCHITECTURES[name]
        )
    classifiers.save_model(model, folder / "model.keras")
    return name, folder / "model.keras", folder / "batch.npz", folder


def one_step(backend: str, saved) -> dict[str, np.ndarray]:
    name, model_path, batch_path, folder = saved
    out_path = folder / f"{backend}.npz"
    arguments = (model_path, batch_path, out_path, SGD_LEARNING_RATE, *OPTIMIZERS[name])
    run_under_backend(backend, ONE_STEP, *map(str, arguments))
    return dict(np.load(out_path))


@pytest.fixture(scope="module")
def tensorflow_step(saved_classifier):
    return one_step("tensorflow", saved_classifier)


@pytest.mark.slow
def test_the_loss_is_softmax_cross_entropy_of_the_logits(saved_classifier, tensorflow_step):
    """A hand-written loss, independent of Keras: mean of -log softmax(z)[label] over the batch, z from the
    model in training mode (EfficientNet-B3's head normalises with the batch's statistics in a step)."""
    _, model_path, batch_path, _ = saved_classifier
    batch = np.load(batch_path)
    model = classifiers.load_model(model_path)
    log_softmax = {}
    # Inference first: a call in training mode moves the BatchNormalization statistics.
    for training in (False, True):
        logits = keras.ops.convert_to_numpy(model(batch["images"], training=training)).astype(np.float64)
        log_softmax[training] = logits - np.logaddexp(logits[:, :1], logits[:, 1:])
    by_hand = -np.mean(np.sum(batch["labels"] * log_softmax[True], axis=1))
    assert tensorflow_step["sgd_loss"] == pytest.approx(by_hand, abs=TOLERANCE)
    np.testing.assert_allclose(tensorflow_step["p_all"], np.exp(log_softmax[False][:, 1]), atol=1e-6)
    # Both classes are called on the untrained model's batch, or the p_all comparison below says little.
    assert tensorflow_step["p_all"].std() > 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params("jax", "torch"))
def test_loss_step_and_probability_agree_with_tensorflow(saved_classifier, tensorflow_step, backend):
    name = saved_classifier[0]
    other = one_step(backend, saved_classifier)
    for optimizer in OPTIMIZERS[name]:
        assert other[f"{optimizer}_loss"] == pytest.approx(tensorflow_step[f"{optimizer}_loss"], abs=TOLERANCE)
    np.testing.assert_allclose(other["sgd_step"], tensorflow_step["sgd_step"], atol=TOLERANCE)
    # The step moved the weights by far more than the tolerance: equal steps are equal gradients, not no step.
    assert np.abs(tensorflow_step["sgd_step"]).max() > 100 * TOLERANCE
    if "adamax" in OPTIMIZERS[name]:
        compared = np.abs(tensorflow_step["sgd_step"]) / SGD_LEARNING_RATE >= ADAMAX_SMALLEST_GRADIENT
        assert compared.mean() > 0.9
        np.testing.assert_allclose(
            other["adamax_step"][compared], tensorflow_step["adamax_step"][compared], atol=TOLERANCE
        )
    np.testing.assert_allclose(other["p_all"], tensorflow_step["p_all"], atol=TOLERANCE)


# Under each backend: the VGG-19 head alone trained on non-negative, linearly separable features (what the
# base's global max pooling of ReLU maps gives) at each scale, with the paper's Adamax at 0.001; P(ALL) of
# held-out features, or NaN where the loss diverged.
VGG_HEAD_AT_SCALES = """
import json, sys
import keras, numpy as np
from leukemia_dtl.model.classifiers import build_head_model, compile_classifier
from leukemia_dtl.model.inference import probability_of_all

rng = np.random.default_rng(0)
labels = np.arange(600) % 2
# Each class raises its own half of the 512 features, over a shared non-negative background.
features = rng.gamma(2.0, 0.5, (600, 512))
features[:, :256] += 0.5 * labels[:, None]
features[:, 256:] += 0.5 * (1 - labels[:, None])
features = (features / features.mean()).astype("float32")
answer = {"backend": keras.backend.backend()}
for scale in map(float, sys.argv[1:]):
    keras.utils.set_random_seed(0)
    head = build_head_model("vgg19", 512, dropout=0.5)
    compile_classifier(head, optimizer="adamax", learning_rate=0.001)
    history = head.fit(scale * features[:400], np.eye(2)[labels[:400]], batch_size=30, epochs=10, verbose=0)
    p_all = probability_of_all(head.predict(scale * features[400:], verbose=0))
    answer[str(scale)] = {"losses": history.history["loss"], "p_all": p_all.tolist(), "is_all": labels[400:].tolist()}
print(json.dumps(answer))
"""
SCALES = (1.0, 10.0, 30.0)


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params())
def test_the_vgg19_head_neither_collapses_nor_diverges_at_the_scale_of_vgg19_features(backend):
    answer = run_under_backend(backend, VGG_HEAD_AT_SCALES, *map(str, SCALES))
    for scale in SCALES:
        trained = answer[str(scale)]
        p_all, is_all = np.array(trained["p_all"]), np.array(trained["is_all"], dtype=bool)
        assert np.isfinite(trained["losses"]).all() and np.isfinite(p_all).all(), (scale, trained["losses"])
        assert trained["losses"][-1] < trained["losses"][0], (scale, trained["losses"])
        # Spread over both sides of 0.5, each class on its own side: not one value for every image.
        assert (p_all[is_all] >= 0.5).mean() > 0.9 and (p_all[~is_all] < 0.5).mean() > 0.9, scale
        assert p_all.max() - p_all.min() > 0.5, scale
