"""The paper's classifiers: sizes, layer order, input normalisation, serialisation, ImageNet weights."""

import socket

import keras
import numpy as np
import pytest

from leukemia_dtl import keras_runtime, models
from leukemia_dtl.errors import UserError
from leukemia_dtl.keras_weights import explain_missing_imagenet_weights, fetch_imagenet_weights
from model_stage_fixtures import PAPER_AUGMENTATION

HEAD_OPTIONS = {"vgg19": {"dropout": 0.5}, "efficientnetb3": {"dropout": 0.5, "dense_units": 256}}
# FACTS.md: parameter counts at 224x224 with the base frozen.
PARAMETER_COUNTS = {"vgg19": (20_025_410, 1_026), "efficientnetb3": (11_183_665, 397_058)}
HEAD_LAYERS = {
    # The paper's GlobalMaxPooling2D is the base's last layer (pooling="max"), for both models.
    "vgg19": [("Dropout", None), ("Dense", "sigmoid")],
    "efficientnetb3": [("BatchNormalization", None), ("Dense", "relu"), ("Dropout", None), ("Dense", "softmax")],
}
AUGMENTATION_LAYERS = ["RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom"]


def build(name, image_size=32, **options):
    return models.build_classifier(
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
    assert kinds[1:5] == AUGMENTATION_LAYERS
    assert type(model.layers[base_at].layer.layers[-1]).__name__ == "GlobalMaxPooling2D"
    head = model.layers[base_at + 1 :]
    assert [layer_signature(layer) for layer in head] == HEAD_LAYERS[name]
    assert head[-1].units == 2
    assert all(layer.rate == 0.5 for layer in head if isinstance(layer, keras.layers.Dropout))
    if name == "efficientnetb3":
        assert head[1].units == 256


def normalise(backbone_name, normalization, images):
    layers = models.input_normalization(backbone_name, normalization)
    return keras.ops.convert_to_numpy(keras.Sequential(layers)(images)) if layers else images


def test_normalisations_feed_each_backbone_as_documented():
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    # VGG19 "model": keras.applications.vgg19.preprocess_input (caffe: BGR, ImageNet mean subtracted).
    expected_vgg = keras.applications.vgg19.preprocess_input(images.copy())
    np.testing.assert_allclose(normalise("vgg19", "model", images), expected_vgg, atol=1e-4)
    # EfficientNetB3 "model": raw 0..255 (its stem rescales); "unit": the paper's /255, i.e. 255x smaller.
    np.testing.assert_array_equal(normalise("efficientnetb3", "model", images), images)
    for backbone_name in models.BACKBONES:
        np.testing.assert_allclose(normalise(backbone_name, "unit", images), images / 255, rtol=1e-6)


def test_normalisation_sits_between_augmentation_and_base(paper_model_224):
    name, model = paper_model_224
    names = [layer.name for layer in model.layers]
    expected = {"vgg19": ["caffe_preprocessing"], "efficientnetb3": []}[name]
    assert names[1 + len(AUGMENTATION_LAYERS) : names.index(name)] == expected
    unit_names = [layer.name for layer in build("vgg19", normalization="unit").layers]
    assert unit_names[unit_names.index("vgg19") - 1] == "unit_rescaling"


@pytest.mark.parametrize("name", ["vgg19", "efficientnetb3"])
def test_saved_model_reloads_with_the_same_predictions(tmp_path, name):
    model = build(name)
    models.compile_classifier(model, optimizer="adamax", learning_rate=0.001)
    model.optimizer.build(model.trainable_variables)  # as after training: its state is saved too
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype("uint8")
    path = tmp_path / f"{name}.keras"
    models.save_model(model, path)
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


def test_compile_uses_categorical_crossentropy_and_no_xla_on_cpu_tensorflow():
    model = build("vgg19")
    models.compile_classifier(model, optimizer="rmsprop", learning_rate=0.01)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.01)
    if keras.backend.backend() == "tensorflow" and keras_runtime.accelerator_name() is None:
        assert model.jit_compile is False


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dense_units": 256}, "dense_units"),
        ({"normalization": "imagenet"}, "normalization"),
        ({"weights": "random"}, "weights"),
        ({"augmentation": {"vertical_flip": True}}, "vertical_flip"),
    ],
)
def test_config_mistakes_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        models.build_classifier("vgg19", image_size=32, dropout=0.5, **{"weights": "none", **options})


def test_unknown_optimizer_and_model_are_user_errors():
    with pytest.raises(UserError, match="optimizer"):
        models.compile_classifier(build("vgg19"), optimizer="sgd")
    with pytest.raises(UserError, match="resnet50"):
        models.build_classifier("resnet50", image_size=32)


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
    weights = models.BACKBONES["efficientnetb3"].imagenet_notop
    with pytest.raises(UserError) as error:
        fetch_imagenet_weights(["efficientnetb3"], tmp_path)
    message = str(error.value)
    assert weights.origin in message
    assert str(tmp_path / "models" / weights.file_name) in message
    assert "URL fetch failure" in message
    assert not (tmp_path / "models" / weights.file_name).exists()


@offline_only
def test_building_with_missing_imagenet_weights_offline_is_a_user_error():
    with pytest.raises(UserError, match="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        with explain_missing_imagenet_weights("vgg19"):
            models.build_classifier("vgg19", image_size=32, weights="imagenet", dropout=0.5)


def test_workflow_expects_the_weight_files_keras_looks_for():
    """rules/common.smk names the ImageNet files without importing Keras; they must match the registry."""
    import re

    from conftest import REPO
    from leukemia_dtl.models import BACKBONES

    common = (REPO / "rules" / "common.smk").read_text()
    declared = dict(re.findall(r'^\s+"(\w+)": "(\w+_notop\.h5)",$', common, re.MULTILINE))
    assert declared == {name: spec.imagenet_notop.file_name for name, spec in BACKBONES.items()}


def test_calibration_turns_a_random_efficientnet_into_unit_scale_features():
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    plain = models.feature_extractor(build("efficientnetb3"))
    keras.utils.set_random_seed(0)
    calibrated = models.feature_extractor(build("efficientnetb3", calibration_images=images))
    plain_features, calibrated_features = (m.predict(images, verbose=0) for m in (plain, calibrated))
    # Uncalibrated, a random EfficientNet-B3 passes features far below the head's BatchNormalization
    # epsilon (1e-3); calibrated, they vary across images on a unit scale.
    assert np.abs(plain_features).max() < 1e-4
    assert 0.1 < calibrated_features.std(axis=0).mean() < 10
    # Only the scale changed: the features are the same random map, up to a per-channel affine change
    # and swish, so they rank the images alike.
    first = np.argmax(plain_features.std(axis=0))
    order = lambda values: np.argsort(np.argsort(values))
    assert np.corrcoef(order(plain_features[:, first]), order(calibrated_features[:, first]))[0, 1] > 0.9


def test_calibration_leaves_a_base_without_batch_normalization_alone():
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    plain = build("vgg19")
    keras.utils.set_random_seed(0)
    calibrated = build("vgg19", calibration_images=images)
    for before, after in zip(plain.get_weights(), calibrated.get_weights()):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("name", ["vgg19", "efficientnetb3"])
def test_head_model_reproduces_the_classifier_head(name):
    images = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(3)
    classifier = build(name, calibration_images=images)
    features = models.feature_extractor(classifier).predict(images, verbose=0)
    keras.utils.set_random_seed(3)
    head = models.build_head_model(name, features.shape[1], **HEAD_OPTIONS[name])
    np.testing.assert_allclose(head.predict(features, verbose=0), classifier.predict(images, verbose=0), atol=1e-6)
