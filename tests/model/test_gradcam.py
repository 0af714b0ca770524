"""Grad-CAM: a model that decides on one image region lights up that region, with the same maps on every Keras
backend; the target is the called class's log-odds; the split at the base's last conv reproduces the model's
logits; the rule draws the panel of a seeded draw of test cells with their maps."""

import textwrap

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_backends import backend_params, run_under_backend
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, write_tsv
from leukemia_dtl.core.vocabulary import CACHE_IMAGES_FILE, GRADCAM_OUTCOMES, INDEX_FILE, PREDICTION_COLUMNS
from leukemia_dtl.data.splits import read_split
from leukemia_dtl.evaluate.gradcam_figure import OUTCOME_OF, gradcam_panel_cells
from leukemia_dtl.evaluate.result_files import read_predictions
from leukemia_dtl.model import backend, classifiers
from leukemia_dtl.model.gradcam import GradCamSplit, gradcam_heatmaps
from leukemia_dtl.model.inference import probability_of_all
from model_stage_fixtures import PAPER_AUGMENTATION, TINY_BACKBONE, write_synthetic_dataset
from rule_scripts import run_rule_script

HEM, ALL = 0, 1
# The known case: 64 px images whose class is decided by a magenta patch in the top-left quadrant; a green
# patch of the same brightness in the bottom-right quadrant appears in every image and decides nothing.
SIZE = 64
QUADRANT = SIZE // 2
PATCH = SIZE // 6
MAGENTA, GREEN = (230, 60, 200), (60, 230, 60)


def patch_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = np.clip(rng.normal(0, 4, (count, SIZE, SIZE, 3)), 0, 255)
    for image, label in zip(images, labels, strict=True):
        row, column = rng.integers(QUADRANT, SIZE - PATCH, 2)
        image[row : row + PATCH, column : column + PATCH] = GREEN
        if label == ALL:
            row, column = rng.integers(2, QUADRANT - PATCH - 1, 2)
            image[row : row + PATCH, column : column + PATCH] = MAGENTA
    return images.astype(np.uint8), labels


@pytest.fixture(scope="module")
def known_case_model(tmp_path_factory):
    """The saved tiny backbone (15x15 last conv maps at 64 px) with the paper's augmentation (so every backend's
    split must keep it off), trained once on the known case for every backend's test."""
    keras.utils.set_random_seed(0)
    images, labels = patch_images(256, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(classifiers.BACKBONES, "tiny", TINY_BACKBONE)
        model = classifiers.build_classifier(
            "tiny", image_size=SIZE, weights="none", dropout=0.0, augmentation=PAPER_AUGMENTATION
        )
    classifiers.compile_classifier(model, optimizer="adam", learning_rate=0.01)
    model.fit(images, keras.utils.to_categorical(labels, 2), epochs=10, batch_size=32, verbose=0)
    test_images, test_labels = patch_images(32, seed=1)
    assert (np.argmax(model.predict(test_images, verbose=0), axis=1) == test_labels).all()
    assert GradCamSplit.of(model).map_shape == (15, 15)
    model_path = tmp_path_factory.mktemp("known_case") / "model.keras"
    classifiers.save_model(model, model_path)
    return model_path


def known_case_targets() -> tuple[np.ndarray, np.ndarray]:
    """The ALL cells of the known case's test images, twice: for the log-odds of ALL, then for those of HEM."""
    images, labels = patch_images(32, seed=1)
    cells = images[labels == ALL]
    return np.concatenate([cells, cells]), np.repeat([ALL, HEM], len(cells))


# gradcam_heatmaps in a child process under another Keras backend: the model's path, then .npy files of the
# images and classes in and of the maps out. Prints the backend, or the UserError that Grad-CAM raised there.
HEATMAPS_IN_CHILD = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    from leukemia_dtl.core.errors import UserError
    from leukemia_dtl.model.classifiers import load_model
    from leukemia_dtl.model.gradcam import GradCamSplit, gradcam_heatmaps

    model_path, images_path, classes_path, maps_path = sys.argv[1:]
    try:
        split = GradCamSplit.of(load_model(model_path))
        np.save(maps_path, gradcam_heatmaps(split, np.load(images_path), np.load(classes_path)))
        print(json.dumps({"backend": keras.backend.backend()}))
    except UserError as error:
        print(json.dumps({"error": str(error)}))
    """
)


def heatmaps_under(keras_backend: str, model_path, images: np.ndarray, classes: np.ndarray, folder) -> np.ndarray:
    """gradcam_heatmaps of the model saved at ``model_path`` under ``keras_backend``: in this process where that is
    its backend (TensorFlow), else in a child, with its files in ``folder``; a UserError there is raised here."""
    if keras_backend == keras.backend.backend():
        return gradcam_heatmaps(GradCamSplit.of(classifiers.load_model(model_path)), images, classes)
    files = {name: folder / f"{keras_backend}_{name}.npy" for name in ("images", "classes", "maps")}
    np.save(files["images"], images)
    np.save(files["classes"], classes)
    answer = run_under_backend(keras_backend, HEATMAPS_IN_CHILD, str(model_path), *map(str, files.values()))
    if "error" in answer:
        raise UserError(answer["error"])
    return np.load(files["maps"])


@pytest.fixture(scope="module")
def known_case_maps(known_case_model):
    """The known case's maps in this process, which every other backend must reproduce."""
    images, classes = known_case_targets()
    return gradcam_heatmaps(GradCamSplit.of(classifiers.load_model(known_case_model)), images, classes)


def quadrant_share(heatmaps: np.ndarray) -> np.ndarray:
    """Each map's share of its heat in the top-left quadrant (0 for a map without heat)."""
    total = heatmaps.sum(axis=(1, 2))
    return heatmaps[:, :QUADRANT, :QUADRANT].sum(axis=(1, 2)) / np.where(total > 0, total, 1)


@pytest.mark.slow
@pytest.mark.parametrize("keras_backend", backend_params())
def test_a_model_deciding_on_one_region_lights_up_that_region(
    known_case_model, known_case_maps, keras_backend, tmp_path
):
    images, classes = known_case_targets()
    heatmaps = heatmaps_under(keras_backend, known_case_model, images, classes, tmp_path)
    # Each backend's own gradients (GradientTape, jax.value_and_grad, torch.autograd) give the same maps.
    np.testing.assert_allclose(heatmaps, known_case_maps, atol=1e-4)

    assert heatmaps.shape == (len(images), SIZE, SIZE)
    assert heatmaps.min() >= 0 and (heatmaps.max(axis=(1, 2)) == 1).all()
    of_all, of_hem = heatmaps[classes == ALL], heatmaps[classes == HEM]
    share = quadrant_share(of_all)
    # Measured, the same on every backend: 0.77 to 0.91, mean 0.86; the bright green decoy's quadrant gets 0.06.
    assert share.mean() > 0.7 and share.min() > 0.5, share
    assert of_all[:, QUADRANT:, QUADRANT:].sum() < 0.2 * of_all.sum()
    # HEM's log-odds on the same cells look elsewhere: the class matters, not just brightness.
    assert quadrant_share(of_hem).mean() < 0.4


def test_the_target_is_the_log_odds_which_a_shift_common_to_both_logits_leaves_alone(known_case_model):
    """Adding the same function of the features to both logits changes no probability, so it must change no map;
    the called class's logit alone (the paper's pre-activation score) would follow it."""
    images, classes = known_case_targets()
    model = classifiers.load_model(known_case_model)
    maps = gradcam_heatmaps(GradCamSplit.of(model), images, classes)
    p_all = probability_of_all(model.predict(images, verbose=0))
    predictions = model.get_layer("predictions")
    kernel, bias = predictions.get_weights()
    common = np.random.default_rng(0).normal(0, 3 * kernel.std(), (len(kernel), 1))
    predictions.set_weights([kernel + common, bias])

    np.testing.assert_allclose(probability_of_all(model.predict(images, verbose=0)), p_all, atol=1e-5)
    np.testing.assert_allclose(gradcam_heatmaps(GradCamSplit.of(model), images, classes), maps, atol=1e-5)


@pytest.mark.slow
def test_a_backend_without_gradients_says_which_work(known_case_model, tmp_path):
    images, classes = known_case_targets()
    with pytest.raises(UserError, match="KERAS_BACKEND set to one of tensorflow, jax, torch"):
        heatmaps_under("numpy", known_case_model, images[:1], classes[:1], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "layer", "map_shape"), [("vgg19", "block5_conv4", (2, 2)), ("efficientnetb3", "top_conv", (1, 1))]
)
def test_paper_backbones_split_at_their_last_convolution(name, layer, map_shape):
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    model = classifiers.build_classifier(
        name, image_size=32, weights="none", dropout=0.5, augmentation=PAPER_AUGMENTATION, calibration_images=images
    )
    split = GradCamSplit.of(model)
    assert (split.layer_name, split.map_shape) == (layer, map_shape)

    logits = keras.ops.convert_to_numpy(split.logits(split.maps(images)))
    np.testing.assert_allclose(logits, model.predict(images, verbose=0), rtol=1e-4, atol=1e-5)
    heatmaps = gradcam_heatmaps(split, images, np.array([HEM, ALL] * 3))
    assert heatmaps.shape == (6, 32, 32)
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0 and heatmaps.max() <= 1


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A saved tiny classifier (with the paper's augmentation), its synthetic cache, and the test predictions."""
    directory = tmp_path_factory.mktemp("gradcam")
    split_path, cache_dir = write_synthetic_dataset(directory)
    keras.utils.set_random_seed(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(classifiers.BACKBONES, "tiny", TINY_BACKBONE)
        model = classifiers.build_classifier(
            "tiny", image_size=32, weights="none", dropout=0.5, augmentation=PAPER_AUGMENTATION
        )
    cache_images = np.load(cache_dir / CACHE_IMAGES_FILE)
    pooled = classifiers.feature_extractor(model).predict(cache_images, verbose=0)
    kernel = np.random.default_rng(0).normal(0, 1, (pooled.shape[1], 2))
    # Centred logits put images on both sides of 0.5, so every outcome has cells.
    model.get_layer("predictions").set_weights([kernel, -np.median(pooled @ kernel, axis=0)])
    model_path = directory / "model.keras"
    classifiers.save_model(model, model_path)

    split = read_split(split_path)
    test = split[split["subset"] == "test"].reset_index(drop=True)
    index = pd.read_csv(cache_dir / "index.tsv", sep="\t").set_index("path")["row"]
    p_all = probability_of_all(model.predict(cache_images[index[test["path"]].to_numpy()], verbose=0))
    predictions = test.assign(p_all=p_all, pred=np.where(p_all >= 0.5, "ALL", "HEM"))[list(PREDICTION_COLUMNS)]
    predictions_path = directory / "test.tsv"
    write_tsv(predictions, predictions_path)
    return model_path, predictions_path, cache_dir


@pytest.mark.slow
def test_the_rule_writes_the_panel_as_png_and_pdf(tmp_path, saved_run, monkeypatch):
    model_path, predictions_path, cache_dir = saved_run
    png, pdf = tmp_path / "gradcam_tiny.png", tmp_path / "gradcam_tiny.pdf"
    # A job's process sets its threads before the backend starts; this one has run the backend already. The
    # job hides the GPUs from itself, and this process gets them back after the test.
    monkeypatch.setattr(backend, "limit_cpu_threads", lambda threads: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    run_rule_script(
        "plot_gradcam.py",
        input={
            "model": str(model_path),
            "predictions": str(predictions_path),
            "cache_images": str(cache_dir / CACHE_IMAGES_FILE),
            "cache_index": str(cache_dir / INDEX_FILE),
        },
        output={"png": str(png), "pdf": str(pdf)},
        params={"cells_per_outcome": 2, "seed": 0, "threshold": 0.5, "title": "tiny, random split"},
    )

    cells = gradcam_panel_cells(read_predictions(predictions_path), 2, 0, threshold=0.5)
    predictions = read_tsv(predictions_path)
    available = [OUTCOME_OF[pair] for pair in zip(predictions["label"], predictions["pred"], strict=True)]
    expected = [outcome for outcome in GRADCAM_OUTCOMES for _ in range(min(2, available.count(outcome)))]
    assert len(set(available)) >= 3 and list(cells["outcome"]) == expected
    with Image.open(png) as image:
        assert image.width > 1000 and image.height > 1000
    assert pdf.read_bytes().startswith(b"%PDF")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([png.name, pdf.name])
