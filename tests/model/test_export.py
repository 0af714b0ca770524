"""Exporting a trained classifier: the SavedModel and the ONNX file, loaded back by TensorFlow and onnxruntime,
give the class probabilities of the .keras model's logits (softmax, P(ALL) second) without its augmentation, and a
failed check publishes nothing."""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import EFFICIENTNETB3, EXPORT_CHECK_FILE, ONNX_FILE, SAVED_MODEL_DIR, VGG19
from leukemia_dtl.data.splits import read_split
from leukemia_dtl.model import classifiers
from leukemia_dtl.model.export import EXPORT_TOLERANCE, check_exports, export_run, inference_model
from leukemia_dtl.model.inference import class_probabilities, probability_of_all
from leukemia_dtl.model.inputs import ImageCache
from model_stage_fixtures import PAPER_AUGMENTATION, TINY_BACKBONE, write_synthetic_dataset

# ONNX's random operators, and any TensorFlow random op a converter could leave in the graph.
RANDOM_OPS = ("Random", "Multinomial", "Bernoulli")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    split_path, cache_dir = write_synthetic_dataset(tmp_path_factory.mktemp("export_data"))
    return split_path, cache_dir, np.asarray(ImageCache.open(cache_dir).images)


def spread_outputs(model: keras.Model, images: np.ndarray) -> None:
    """Output weights that spread P(ALL) over 0..1 on ``images``, so that an export that augments, or
    otherwise computes something else, shows in its outputs (an untrained head gives ~0.5 everywhere)."""
    features = keras.Model(model.input, model.get_layer("predictions").input).predict(images, verbose=0)
    kernel = np.random.default_rng(0).normal(0, 1, (features.shape[1], 2))
    logits = features @ kernel
    # Logits centred on 0 with a standard deviation of 3: confident, but far from saturated.
    scale = 3 / logits.std(axis=0)
    model.get_layer("predictions").set_weights([kernel * scale, -np.median(logits, axis=0) * scale])


def as_saved_before(model: keras.Model) -> keras.Model:
    """The classifier as models saved before the augmentation's ``call`` defaulted to ``training=False`` hold it:
    their graph recorded the augmentation's call with ``training=True``, which a SavedModel traces as it stands."""
    images = keras.Input(shape=model.input_shape[1:], name="image")
    outputs = model.get_layer("augment")(images, training=True)
    for layer in model.layers[2:]:
        outputs = layer(outputs)
    return keras.Model(images, outputs, name=model.name)


def exported(directory, dataset, backbone_name: str, **build_options):
    """Build, save and reload a classifier with the paper's augmentation, then export it with export_run."""
    split_path, cache_dir, images = dataset
    keras.utils.set_random_seed(0)
    model = classifiers.build_classifier(
        backbone_name, image_size=32, weights="none", augmentation=PAPER_AUGMENTATION, **build_options
    )
    spread_outputs(model, images)
    model = as_saved_before(model)
    model_path = directory / "model.keras"
    classifiers.save_model(model, model_path)
    out = directory / "export"
    export_run(model_path, split_path, cache_dir, out / SAVED_MODEL_DIR, out / ONNX_FILE, out / EXPORT_CHECK_FILE)
    return classifiers.load_model(model_path), out


@pytest.fixture(scope="module")
def vgg19_export(tmp_path_factory, dataset):
    return exported(tmp_path_factory.mktemp(VGG19), dataset, VGG19, dropout=0.3)


@pytest.fixture(scope="module")
def efficientnetb3_export(tmp_path_factory, dataset):
    # A random EfficientNet-B3 base passes features of ~1e-7 unless calibrated.
    options = {"dropout": 0.3, "calibration_images": dataset[2]}
    return exported(tmp_path_factory.mktemp(EFFICIENTNETB3), dataset, EFFICIENTNETB3, **options)


@pytest.fixture(params=[VGG19, EFFICIENTNETB3])
def export(request):
    """(model, export folder) of each backbone."""
    return request.getfixturevalue(f"{request.param}_export")


@pytest.mark.slow
def test_exports_give_the_keras_outputs_without_augmentation(export, dataset):
    model, out = export
    split_path, cache_dir, _ = dataset
    split = read_split(split_path)
    cache = ImageCache.open(cache_dir)
    # Held-out images beyond the 16 the export was checked on.
    images = np.asarray(cache.images[cache.rows_for(split.loc[split["subset"] != "train", "path"])], "float32")
    logits = model.predict(images, verbose=0)
    expected = class_probabilities(logits)
    assert expected[:, 1].std() > 0.1

    saved_model = tf.saved_model.load(str(out / SAVED_MODEL_DIR))
    saved_model_outputs = saved_model.serve(tf.constant(images)).numpy()
    np.testing.assert_allclose(saved_model_outputs, expected, atol=EXPORT_TOLERANCE, rtol=0)
    np.testing.assert_array_equal(saved_model.serve(tf.constant(images)).numpy(), saved_model_outputs)

    session = onnxruntime.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    (onnx_input,) = session.get_inputs()
    assert onnx_input.name == "image" and onnx_input.shape[1:] == [32, 32, 3]
    (onnx_outputs,) = session.run(None, {"image": images})
    np.testing.assert_allclose(onnx_outputs, expected, atol=EXPORT_TOLERANCE, rtol=0)
    # The ONNX file's second output is the P(ALL) the workflow reports.
    np.testing.assert_allclose(onnx_outputs[:, 1], probability_of_all(logits), atol=EXPORT_TOLERANCE, rtol=0)
    operations = {node.op_type for node in onnx.load(str(out / ONNX_FILE)).graph.node}
    assert not [operation for operation in operations if any(random in operation for random in RANDOM_OPS)]


@pytest.mark.slow
def test_export_check_is_recorded(export):
    _, out = export
    check = json.loads((out / EXPORT_CHECK_FILE).read_text())
    assert check["images"] == 16 and check["tolerance"] == EXPORT_TOLERANCE
    assert 0 <= check["saved_model_max_abs_diff"] <= EXPORT_TOLERANCE
    assert 0 <= check["onnx_max_abs_diff"] <= EXPORT_TOLERANCE
    assert check["onnx_opset"] >= 13
    assert check["versions"]["tensorflow"] == tf.__version__ and check["versions"]["onnxruntime"]
    assert set(check["versions"]) == {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"}
    # Nothing staged is left beside the outputs.
    assert sorted(path.name for path in out.iterdir()) == sorted([SAVED_MODEL_DIR, ONNX_FILE, EXPORT_CHECK_FILE])


@pytest.mark.slow
def test_inference_model_shares_every_layer_but_the_augmentation(export):
    model, _ = export
    copy = inference_model(model)
    assert [layer.name for layer in model.layers if layer not in copy.layers] == ["image", "augment"]
    assert len(copy.weights) == len(model.weights) - len(model.get_layer("augment").weights)
    # What it adds: the softmax of the logits, so an export outputs probabilities.
    assert [type(layer).__name__ for layer in copy.layers if layer not in model.layers] == ["InputLayer", "Softmax"]


@pytest.mark.slow
def test_keras_own_export_of_such_a_model_would_augment(vgg19_export, dataset, tmp_path):
    """Why inference_model exists, and that the fixture's models have the graph it guards against."""
    model, _ = vgg19_export
    model.export(str(tmp_path / "as_saved"), format="tf_saved_model", verbose=False)
    images = dataset[2][:16].astype("float32")
    saved_model = tf.saved_model.load(str(tmp_path / "as_saved"))
    augmented = probability_of_all(saved_model.serve(tf.constant(images)).numpy())
    assert np.abs(augmented - probability_of_all(model.predict(images, verbose=0))).max() > 0.05


@pytest.mark.slow
def test_a_model_that_differs_from_its_export_fails_the_check(vgg19_export, dataset):
    model, out = vgg19_export
    kernel, bias = model.get_layer("predictions").get_weights()
    # Only ALL's logit moves: a shift of both would change no probability.
    model.get_layer("predictions").set_weights([kernel, bias + np.array([0.0, 1.0])])
    try:
        with pytest.raises(UserError, match=r"differs from the \.keras model.*saved_model .*onnx "):
            check_exports(model, out / SAVED_MODEL_DIR, out / ONNX_FILE, dataset[2][:8])
    finally:
        # The module's other tests share the model.
        model.get_layer("predictions").set_weights([kernel, bias])


def export_tiny_model(tmp_path, dataset, monkeypatch, diverged: bool = False) -> Path:
    """export_run of a small random classifier into tmp_path/export; ``diverged``: NaN weights in its head."""
    monkeypatch.setitem(classifiers.BACKBONES, "tiny", TINY_BACKBONE)
    split_path, cache_dir, _ = dataset
    model = classifiers.build_classifier("tiny", image_size=32, weights="none", dropout=0.5)
    if diverged:
        kernel, bias = model.get_layer("predictions").get_weights()
        model.get_layer("predictions").set_weights([np.full_like(kernel, np.nan), bias])
    classifiers.save_model(model, tmp_path / "model.keras")
    out = tmp_path / "export"
    export_run(
        tmp_path / "model.keras", split_path, cache_dir, out / SAVED_MODEL_DIR, out / ONNX_FILE, out / EXPORT_CHECK_FILE
    )
    return out


@pytest.mark.slow
def test_a_failed_check_publishes_nothing(tmp_path, dataset, monkeypatch):
    """A diverged model (NaN weights) exports, but its outputs are not finite: the check fails the job."""
    with pytest.raises(UserError, match="nan means an output is not finite"):
        export_tiny_model(tmp_path, dataset, monkeypatch, diverged=True)
    assert not any((tmp_path / "export").rglob("*"))


def test_a_missing_converter_names_the_package_to_install_and_publishes_nothing(tmp_path, dataset, monkeypatch):
    # None in sys.modules makes the import fail, as for a package that is not installed.
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(UserError, match="pip install tf2onnx"):
        export_tiny_model(tmp_path, dataset, monkeypatch)
    assert not any((tmp_path / "export").rglob("*"))
