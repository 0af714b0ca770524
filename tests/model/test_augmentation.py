"""The paper's augmentation layer: the Keras layers' distribution, exact resampling, a compiled step."""

import keras
import numpy as np
import pytest
from scipy.stats import ks_2samp

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.model.augmentation import RandomAffineAugmentation, augmentation_layers
from leukemia_dtl.model.classifiers import build_classifier, compile_classifier, load_model, save_model
from model_stage_fixtures import PAPER_AUGMENTATION

SIDE = 48


def marked_image() -> np.ndarray:
    """Black, with a bright 3x7 bar off the centre: its centroid and mass show flip, rotation, shift, zoom."""
    image = np.zeros((SIDE, SIDE, 3), np.float32)
    image[12:15, 28:35] = 200.0
    return image


def keras_layers_augmentation(seed: int) -> keras.Sequential:
    """The same augmentation from Keras's own layers (not compilable with XLA), applied one after the other.
    Each layer gets its own seed: layers seeded alike draw the same numbers, e.g. zoom in step with shift."""
    shift, zoom = PAPER_AUGMENTATION["shift"], PAPER_AUGMENTATION["zoom"]
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(
                PAPER_AUGMENTATION["rotation_degrees"] / 360, fill_mode="nearest", seed=seed + 1
            ),
            keras.layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomZoom(zoom, zoom, fill_mode="nearest", seed=seed + 3),
        ]
    )


def bar_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: the bar's centroid (x, y from the centre), its orientation (angle of its long axis, from
    the second moments; shift and zoom leave it nearly alone, rotation sets it) and its mass."""
    weights = images[..., 0]
    mass = weights.sum(axis=(1, 2))
    rows, columns = np.mgrid[:SIDE, :SIDE] - (SIDE - 1) / 2

    def moment(values):
        return (weights * values).sum(axis=(1, 2)) / mass

    x, y = moment(columns), moment(rows)
    xx = moment(columns**2) - x**2
    yy = moment(rows**2) - y**2
    xy = moment(columns * rows) - x * y
    return {"x": x, "y": y, "orientation": 0.5 * np.arctan2(2 * xy, xx - yy), "mass": mass}


def test_augmentation_draws_from_the_keras_layers_distribution():
    batch = np.repeat(marked_image()[None], 600, axis=0)
    ours = keras.ops.convert_to_numpy(RandomAffineAugmentation(**PAPER_AUGMENTATION, seed=1)(batch, training=True))
    theirs = keras.ops.convert_to_numpy(keras_layers_augmentation(seed=2)(batch, training=True))
    ours, theirs = bar_statistics(ours), bar_statistics(theirs)
    for name in ours:
        # Same flip rate, angle, shift and zoom ranges: the bar lands alike (p >= 0.53 here; the wider
        # ranges below give p < 1e-4).
        assert ks_2samp(ours[name], theirs[name]).pvalue > 0.001, name
    # Both flip about half the images: the bar's centroid then sits left of the centre.
    assert 0.4 < np.mean(ours["x"] < 0) < 0.6


@pytest.mark.parametrize(
    "other_option", [{"rotation_degrees": 25}, {"shift": 0.2}, {"zoom": 0.3}, {"horizontal_flip": False}]
)
def test_the_distribution_check_tells_other_ranges_apart(other_option):
    batch = np.repeat(marked_image()[None], 600, axis=0)
    other = RandomAffineAugmentation(**{**PAPER_AUGMENTATION, **other_option}, seed=1)
    ours, theirs = (
        bar_statistics(keras.ops.convert_to_numpy(images))
        for images in (other(batch, training=True), keras_layers_augmentation(seed=2)(batch, training=True))
    )
    assert min(ks_2samp(ours[name], theirs[name]).pvalue for name in ours) < 1e-4


def test_resampling_is_exact_without_rotation_shift_or_zoom():
    image = np.random.default_rng(0).uniform(0, 255, (SIDE, SIDE, 3)).astype("float32")
    batch = np.repeat(image[None], 64, axis=0)
    flipped = keras.ops.convert_to_numpy(RandomAffineAugmentation(horizontal_flip=True, seed=0)(batch, training=True))
    mirrored = np.array([np.array_equal(out, image[:, ::-1]) for out in flipped])
    unchanged = np.array([np.array_equal(out, image) for out in flipped])
    assert np.all(mirrored | unchanged) and 16 < mirrored.sum() < 48


def test_augmentation_is_off_outside_training():
    batch = np.repeat(marked_image()[None], 4, axis=0)
    np.testing.assert_array_equal(RandomAffineAugmentation(**PAPER_AUGMENTATION)(batch, training=False), batch)


def test_a_classifier_called_without_training_does_not_augment():
    # Keras records a layer's resolved `training` in the saved graph: with a default of True, a plain call of the
    # classifier (as model.export and Grad-CAM make it) augmented every image.
    model = build_classifier("vgg19", image_size=32, weights="none", augmentation=PAPER_AUGMENTATION, dropout=0.5)
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), model.predict(images, verbose=0), atol=1e-6)


def test_augmentation_options_are_checked():
    assert augmentation_layers(None) == []
    assert augmentation_layers({"horizontal_flip": False, "rotation_degrees": 0}) == []
    with pytest.raises(UserError, match="brightness"):
        augmentation_layers({"brightness": 0.2})


@pytest.mark.slow
def test_training_step_compiles_with_the_paper_augmentation(tmp_path):
    model = build_classifier("vgg19", image_size=32, weights="none", augmentation=PAPER_AUGMENTATION, dropout=0.5)
    compile_classifier(model)
    # With Keras's RandomRotation/Translation/Zoom the model refused jit_compile (it fell back to False).
    model.compile(optimizer="adamax", loss="categorical_crossentropy", jit_compile=True)
    assert model.jit_compile is True
    images = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = np.eye(2, dtype="float32")[np.arange(16) % 2]
    before = [weight.copy() for weight in model.get_weights()]
    # On TensorFlow this is an XLA-compiled step: the Keras layers' ImageProjectiveTransformV3 fails here.
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(old, new) for old, new in zip(before, model.get_weights(), strict=True))
    save_model(model, tmp_path / "model.keras")
    reloaded = load_model(tmp_path / "model.keras")
    assert reloaded.get_layer("augment").get_config() == model.get_layer("augment").get_config()
