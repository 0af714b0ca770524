"""The paper's classifiers: sizes, layer order, input normalisation, serialisation, ImageNet weights."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.model import backend, classifiers
from leukemia_dtl.model.imagenet_weights import explain_missing_imagenet_weights, fetch_imagenet_weights
from model_stage_fixtures import PAPER_AUGMENTATION

HEAD_OPTIONS = {"vgg19": {"dropout": 0.5}, "efficientnetb3": {"dropout": 0.5, "dense_units": 256}}
# Parameter counts at 224x224 with the base frozen, as Keras's VGG19 and EfficientNetB3 (include_top=False,
# pooling="max") with the paper's heads have them.
PARAMETER_COUNTS = {"vgg19": (20_025_410, 1_026), "efficientnetb3": (11_183_665, 397_058)}
HEAD_LAYERS = {
    # The paper's GlobalMaxPooling2D is the base's last layer (pooling="max"), for both models. The output Dense
    # gives the logits: the paper's sigmoid (VGG-19) and softmax (EfficientNet-B3) become softmax(z), as TensorFlow
    # trained both (tests/model/test_backend_equivalence.py).
    "vgg19": [("Dropout", None), ("Dense", "linear")],
    "efficientnetb3": [("BatchNormalization", None), ("Dense", "relu"), ("Dropout", None), ("Dense", "linear")],
}
# Flip, rotation, shift and zoom in one compilable layer (tests/model/test_augmentation.py).
AUGMENTATION_LAYERS = ["RandomAffineAugmentation"]


def build(name, image_size=32, **options):
    return classifiers.build_classifier(
        name,
        image_size=image_size,
        weights="none",
        augmentation=PAPER_AUGMENTATION,
        **{**HEAD_OPTIONS[name], **options},
    )


@pytest.fixture(scope="module", params=["vgg19", "efficientnetb3"])
def paper_model_224(request):
    return request.param, build(request.param, image_size=224)


def trainable_count(model):
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


def test_parameter_counts_match_facts(paper_model_224):
    name, model = paper_model_224
    assert (model.count_params(), trainable_count(model)) == PARAMETER_COUNTS[name]
    assert model.get_layer(name).trainable is False


def layer_signature(layer):
    activation = getattr(layer, "activation", None)
    return type(layer).__name__, activation.__name__ if activation else None


def test_layers_follow_the_paper(paper_model_224):
    name, model = paper_model_224
    kinds = [type(layer).__name__ for layer in model.layers]
    base_at = [layer.name for layer in model.layers].index(name)
    assert kinds[1 : 1 + len(AUGMENTATION_LAYERS)] == AUGMENTATION_LAYERS
    assert type(model.layers[base_at].layer.layers[-1]).__name__ == "GlobalMaxPooling2D"
    head = model.layers[base_at + 1 :]
    assert [layer_signature(layer) for layer in head] == HEAD_LAYERS[name]
    assert head[-1].units == 2
    assert all(layer.rate == 0.5 for layer in head if isinstance(layer, keras.layers.Dropout))
    if name == "efficientnetb3":
        assert head[1].units == 256


def normalise(backbone_name, normalization, images):
    layers = classifiers.input_normalization(backbone_name, normalization)
    return keras.ops.convert_to_numpy(keras.Sequential(layers)(images)) if layers else images


def test_normalisations_feed_each_backbone_as_documented():
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    # VGG19 "model": keras.applications.vgg19.preprocess_input (caffe: BGR, ImageNet mean subtracted).
    expected_vgg = keras.applications.vgg19.preprocess_input(images.copy())
    np.testing.assert_allclose(normalise("vgg19", "model", images), expected_vgg, atol=1e-4)
    # EfficientNetB3 "model": raw 0..255 (its stem rescales); "unit": the paper's /255, i.e. 255x smaller.
    np.testing.assert_array_equal(normalise("efficientnetb3", "model", images), images)
    for backbone_name in classifiers.BACKBONES:
        np.testing.assert_allclose(normalise(backbone_name, "unit", images), images / 255, rtol=1e-6)


def test_normalisation_sits_between_augmentation_and_base(paper_model_224):
    name, model = paper_model_224
    names = [layer.name for layer in model.layers]
    expected = {"vgg19": ["caffe_preprocessing"], "efficientnetb3": []}[name]
    assert names[1 + len(AUGMENTATION_LAYERS) : names.index(name)] == expected
    unit_names = [layer.name for layer in build("vgg19", normalization="unit").layers]
    assert unit_names[unit_names.index("vgg19") - 1] == "unit_rescaling"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg19", "efficientnetb3"])
def test_saved_model_reloads_with_the_same_predictions(tmp_path, name):
    model = build(name)
    classifiers.compile_classifier(model, optimizer="adamax", learning_rate=0.001)
    model.optimizer.build(model.trainable_variables)  # as after training: its state is saved too
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype("uint8")
    path = tmp_path / f"{name}.keras"
    classifiers.save_model(model, path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no staging leftovers
    reloaded = keras.saving.load_model(path)
    # Eager calls: tracing two predict graphs of EfficientNetB3 would cost ~15 s on two cores.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(images, training=False)),
        keras.ops.convert_to_numpy(model(images, training=False)),
        atol=1e-6,
    )
    assert isinstance(reloaded.loss, keras.losses.CategoricalCrossentropy)
    assert type(reloaded.optimizer).__name__ == "Adamax"
    assert len(reloaded.optimizer.variables) == len(model.optimizer.variables)


def test_compile_uses_categorical_crossentropy_on_the_logits_and_no_xla_on_cpu_tensorflow():
    model = build("vgg19")
    classifiers.compile_classifier(model, optimizer="rmsprop", learning_rate=0.01)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert model.loss.get_config()["from_logits"] is True
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.01)
    if keras.backend.backend() == "tensorflow" and backend.accelerator_name() is None:
        assert model.jit_compile is False


def test_a_compiled_classifier_traces_its_train_step_once(tiny_backbone):
    """The accuracy metric exists from compile on: one built inside the first traced step makes TensorFlow trace
    the step again (seconds of CPU for a real base in every training job)."""
    model = classifiers.build_classifier("tiny", image_size=16, weights="none", dropout=0.5)
    classifiers.compile_classifier(model, optimizer="adamax", learning_rate=0.001)
    model.optimizer.build(model.trainable_variables)  # as the resume store does before fit
    traces = []
    train_step = model.train_step
    model.train_step = lambda data: traces.append(data) or train_step(data)
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype("float32")
    model.fit(images, np.eye(2)[[0, 1] * 4], batch_size=4, epochs=2, verbose=0)
    assert len(traces) == 1
    assert list(model.history.history) == ["accuracy", "loss"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dense_units": 256}, "dense_units"),
        ({"augmentation": {"vertical_flip": True}}, "vertical_flip"),
    ],
)
def test_config_mistakes_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        classifiers.build_classifier("vgg19", image_size=32, dropout=0.5, **{"weights": "none", **options})


def test_an_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="resnet50"):
        classifiers.build_classifier("resnet50", image_size=32)


def weight_server_reachable() -> bool:
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


offline_only = pytest.mark.skipif(weight_server_reachable(), reason="needs a machine without internet access")


@offline_only
def test_offline_weight_fetch_says_where_to_put_the_file(tmp_path):
    """Keras fails at once without the network; the message names file, URL and where to copy it."""
    weights = classifiers.BACKBONES["efficientnetb3"].imagenet_notop
    with pytest.raises(UserError) as error:
        fetch_imagenet_weights(["efficientnetb3"], tmp_path)
    message = str(error.value)
    assert weights.origin in message
    assert str(tmp_path / "models" / weights.file_name) in message
    assert "URL fetch failure" in message
    assert not (tmp_path / "models" / weights.file_name).exists()


@offline_only
def test_building_with_missing_imagenet_weights_offline_is_a_user_error():
    with (
        pytest.raises(UserError, match=r"vgg19_weights_tf_dim_ordering_tf_kernels_notop\.h5"),
        explain_missing_imagenet_weights("vgg19"),
    ):
        classifiers.build_classifier("vgg19", image_size=32, weights="imagenet", dropout=0.5)


def test_weight_files_are_the_ones_keras_applications_load():
    """The vocabulary names the ImageNet files (rules/common.smk declares them as fetch_weights outputs,
    without importing Keras): they, their URLs and hashes must be what keras.applications downloads."""
    import inspect

    from keras.src.applications import efficientnet, vgg19

    from leukemia_dtl.core.vocabulary import EFFICIENTNETB3, IMAGENET_WEIGHT_FILES, VGG19

    vgg = classifiers.BACKBONES[VGG19].imagenet_notop
    assert vgg.origin == vgg19.WEIGHTS_PATH_NO_TOP and vgg.origin.endswith("/" + IMAGENET_WEIGHT_FILES[VGG19])
    assert f'file_hash="{vgg.md5}"' in inspect.getsource(vgg19)
    efficient = classifiers.BACKBONES[EFFICIENTNETB3].imagenet_notop
    # EfficientNet names its notop file <name>_notop.h5 under BASE_WEIGHTS_PATH, with the second hash of its pair.
    assert IMAGENET_WEIGHT_FILES[EFFICIENTNETB3] == f"{EFFICIENTNETB3}_notop.h5"
    assert efficient.origin == efficientnet.BASE_WEIGHTS_PATH + IMAGENET_WEIGHT_FILES[EFFICIENTNETB3]
    assert efficient.md5 == efficientnet.WEIGHTS_HASHES["b3"][1]


@pytest.mark.slow
def test_calibration_turns_a_random_efficientnet_into_unit_scale_features():
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    plain = classifiers.feature_extractor(build("efficientnetb3"))
    keras.utils.set_random_seed(0)
    calibrated = classifiers.feature_extractor(build("efficientnetb3", calibration_images=images))
    plain_features, calibrated_features = (m.predict(images, verbose=0) for m in (plain, calibrated))
    # Uncalibrated, a random EfficientNet-B3 passes features far below the head's BatchNormalization
    # epsilon (1e-3); calibrated, they vary across images on a unit scale.
    assert np.abs(plain_features).max() < 1e-4
    assert 0.1 < calibrated_features.std(axis=0).mean() < 10
    # Only the scale changed: the features are the same random map, up to a per-channel affine change
    # and swish, so they rank the images alike.
    first = np.argmax(plain_features.std(axis=0))

    def order(values):
        return np.argsort(np.argsort(values))

    assert np.corrcoef(order(plain_features[:, first]), order(calibrated_features[:, first]))[0, 1] > 0.9


@pytest.mark.slow
def test_calibration_sets_a_random_vgg19s_last_convolution_and_nothing_else(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    plain = build("vgg19")
    keras.utils.set_random_seed(0)
    calibrated = build("vgg19", calibration_images=images)
    base = calibrated.get_layer("vgg19").layer
    # By hand: the last convolution's pre-activation, from its input and its calibrated kernel and bias.
    inputs = keras.Model(base.input, base.get_layer("block5_conv4").input)
    caffe = classifiers.input_normalization("vgg19", "model")
    block_inputs = inputs.predict(keras.Sequential(caffe)(images), verbose=0)
    kernel, bias = base.get_layer("block5_conv4").get_weights()
    pre_activation = keras.ops.convert_to_numpy(keras.ops.conv(block_inputs, kernel, padding="same")) + bias
    pre_activation = pre_activation.reshape(-1, pre_activation.shape[-1]).astype(np.float64)
    np.testing.assert_allclose(pre_activation.mean(axis=0), classifiers.LAST_CONVOLUTION_MEAN, atol=1e-4)
    np.testing.assert_allclose(pre_activation.std(axis=0), 1, rtol=1e-3)
    changed = [
        layer.name
        for layer, original in zip(base.layers, plain.get_layer("vgg19").layer.layers, strict=True)
        if any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(), original.get_weights(), strict=True))
    ]
    assert changed == ["block5_conv4"]
    # Features that vary across images about as much as they share (a random VGG-19's vary by about 0.002 around
    # 0.02), and the calibrated model saves and reloads as it is.
    features = classifiers.feature_extractor(calibrated).predict(images, verbose=0)
    assert features.std(axis=0).mean() > 0.3 * features.mean() > 0.01
    classifiers.save_model(calibrated, tmp_path / "model.keras")
    np.testing.assert_allclose(
        classifiers.load_model(tmp_path / "model.keras").predict(images, verbose=0),
        calibrated.predict(images, verbose=0),
        atol=1e-5,
    )


def test_calibration_leaves_a_backbone_without_a_calibration_alone(tiny_backbone):
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    plain = classifiers.build_classifier("tiny", image_size=32, weights="none", dropout=0.5)
    keras.utils.set_random_seed(0)
    calibrated = classifiers.build_classifier(
        "tiny", image_size=32, weights="none", dropout=0.5, calibration_images=images
    )
    for before, after in zip(plain.get_weights(), calibrated.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


CALIBRATION_PEAK = """
import resource, sys
import numpy as np
from leukemia_dtl.model.classifiers import build_classifier
images = np.random.default_rng(0).integers(0, 256, (int(sys.argv[1]), 224, 224, 3), dtype=np.uint8)
build_classifier("efficientnetb3", image_size=224, weights="none", calibration_images=images, dropout=0.5)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def calibration_peak_gb(images: int) -> float:
    """Peak resident memory (GB) of a fresh process that builds a calibrated EfficientNet-B3 at 224 px."""
    result = subprocess.run(
        [sys.executable, "-c", CALIBRATION_PEAK, str(images)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(classifiers.__file__).parents[2])},
    )
    return float(result.stdout.split()[-1])


@pytest.mark.slow
def test_calibration_memory_does_not_grow_with_the_sample():
    # Calibrating on all images in one call peaked at 12.4 GB for 64 images at 224 px (0.15 GB per
    # image; 256 images were killed for memory on a 24 GB machine). In batches the peak stays put.
    few, many = calibration_peak_gb(16), calibration_peak_gb(96)
    assert many < 2.5, f"calibration on 96 images at 224 px peaked at {many:.2f} GB"
    assert many - few < 0.3, f"peak grew from {few:.2f} GB (16 images) to {many:.2f} GB (96 images)"


@pytest.mark.slow
def test_batched_calibration_equals_one_pass_statistics():
    images = np.random.default_rng(2).integers(0, 256, (21, 32, 32, 3)).astype("float32")
    base = keras.applications.EfficientNetB3(include_top=False, weights=None, input_shape=(32, 32, 3))
    last = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)][-1]
    activations = keras.Model(base.input, last.input).predict(images, verbose=0).reshape(-1, last.input.shape[-1])
    # 21 images in batches of 4: five full batches and a ragged one.
    classifiers.standardize_last_batch_normalization(base, images, [], batch_size=4)
    np.testing.assert_allclose(last.moving_mean.numpy(), activations.mean(axis=0), rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(last.moving_variance.numpy(), activations.var(axis=0), rtol=1e-3, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg19", "efficientnetb3"])
def test_head_model_reproduces_the_classifier_head(name):
    images = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(3)
    classifier = build(name, calibration_images=images)
    features = classifiers.feature_extractor(classifier).predict(images, verbose=0)
    keras.utils.set_random_seed(3)
    head = classifiers.build_head_model(name, features.shape[1], **HEAD_OPTIONS[name])
    np.testing.assert_allclose(head.predict(features, verbose=0), classifier.predict(images, verbose=0), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_a_model_saved_with_an_output_activation_is_refused_with_what_to_do(tmp_path, activation):
    """Models of versions before the logits head: their outputs are not the logits P(ALL) is read from."""
    model = build("vgg19")
    features = model.layers[-1].input
    old = keras.Model(model.input, keras.layers.Dense(2, activation=activation, name="predictions")(features))
    classifiers.save_model(old, tmp_path / "model.keras")
    with pytest.raises(UserError, match=rf"ends in '{activation}' .* earlier version .* Retrain it"):
        classifiers.load_model(tmp_path / "model.keras")
    classifiers.save_model(model, tmp_path / "current.keras")
    assert classifiers.load_model(tmp_path / "current.keras").layers[-1].name == classifiers.OUTPUT_LAYER
