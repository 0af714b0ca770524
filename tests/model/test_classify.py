"""Classifying a folder of new images: every file scored or listed with its reason, images read as the training
cache was built, a seed ensemble's mean, and the command line."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.vocabulary import CLASSIFY_COLUMNS, CLASSIFY_REJECTED_COLUMNS
from leukemia_dtl.data.image_cache import load_resized
from leukemia_dtl.model import classifiers
from leukemia_dtl.model.classify import classify_folder, find_images
from leukemia_dtl.model.inference import predict_probability_of_all, probability_of_all
from leukemia_dtl.model.inputs import ImageCache
from model_stage_fixtures import TINY_BACKBONE, write_synthetic_dataset

# Folder file -> cache row it shows, for the images written at the cache's size in a lossless format.
AT_SIZE = {"a/cell0.bmp": 0, "a/cell1.BMP": 1, "b/cell2.png": 2, "b/deeper/cell3.png": 3}
UPSCALED, GRAY, RGBA = "large/cell4_x2.png", "modes/cell5_gray.bmp", "modes/cell6_rgba.png"
TRUNCATED, TEXT = "broken/cut.bmp", "notes.txt"


def spread_classifier(cache_images: np.ndarray, seed: int):
    """An untrained tiny classifier whose P(ALL) spreads over 0..1 on the cache (test_inference's recipe), so
    a wrongly read image shows in its score."""
    import keras

    keras.utils.set_random_seed(seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(classifiers.BACKBONES, "tiny", TINY_BACKBONE)
        model = classifiers.build_classifier("tiny", image_size=32, weights="none", dropout=0.5)
    pooled = classifiers.feature_extractor(model).predict(cache_images, verbose=0)
    kernel = np.random.default_rng(seed).normal(0, 4, (pooled.shape[1], 2))
    model.get_layer("predictions").set_weights([kernel, -np.median(pooled @ kernel, axis=0)])
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two saved models, the cache they are compared on, and a folder of images and other files."""
    directory = tmp_path_factory.mktemp("classify")
    _, cache_dir = write_synthetic_dataset(directory)
    cache = ImageCache.open(cache_dir)
    model_paths = []
    for seed in (0, 1):
        model_paths.append(directory / f"model{seed}.keras")
        classifiers.save_model(spread_classifier(np.asarray(cache.images), seed), model_paths[-1])

    folder = directory / "images"
    rows = cache.images
    for name, row in AT_SIZE.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rows[row]).save(folder / name)
    for name in (UPSCALED, GRAY, TRUNCATED):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rows[4]).resize((64, 64), Image.Resampling.BICUBIC).save(folder / UPSCALED)
    Image.fromarray(rows[5]).convert("L").save(folder / GRAY)
    Image.fromarray(np.dstack([rows[6], np.full((32, 32), 128, np.uint8)]), mode="RGBA").save(folder / RGBA)
    Image.fromarray(rows[7]).save(folder / TRUNCATED)
    (folder / TRUNCATED).write_bytes((folder / TRUNCATED).read_bytes()[:1500])
    (folder / TEXT).write_text("not an image\n")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    return model_paths, cache, folder


def test_every_file_is_scored_or_rejected_and_scores_match_the_prediction_path(tmp_path, setup):
    model_paths, cache, folder = setup
    predictions_path, rejected_path = tmp_path / "out" / "predictions.tsv", tmp_path / "out" / "rejected.tsv"
    predictions, rejected = classify_folder(
        [model_paths[0]], folder, 0.4, "random/tiny/seed0", predictions_path, rejected_path, chunk_size=3
    )

    assert read_tsv(predictions_path).columns.tolist() == list(CLASSIFY_COLUMNS)
    assert read_tsv(rejected_path).columns.tolist() == list(CLASSIFY_REJECTED_COLUMNS)
    written = read_tsv(predictions_path)
    assert written.drop(columns="p_all").equals(predictions.drop(columns="p_all"))
    np.testing.assert_allclose(written["p_all"].astype(float), predictions["p_all"], rtol=1e-12)
    assert read_tsv(rejected_path).equals(rejected)
    assert predictions["path"].tolist() == sorted([*AT_SIZE, UPSCALED, GRAY, RGBA])
    assert (predictions["model"] == "random/tiny/seed0").all()
    assert (predictions["pred"] == np.where(predictions["p_all"] >= 0.4, "ALL", "HEM")).all()
    assert {"ALL", "HEM"} <= set(predictions["pred"])

    model = classifiers.load_model(model_paths[0])
    p_all = predictions.set_index("path")["p_all"]
    # Lossless files at the cache's size score as their cache rows do in the workflow's prediction tables; the
    # alpha channel is dropped, as the cache builder drops it.
    paths = pd.Series([*AT_SIZE, RGBA])
    source_rows = pd.Series([*AT_SIZE.values(), 6], index=paths.tolist())
    row_cache = ImageCache(cache.images, source_rows)
    np.testing.assert_allclose(p_all[paths], predict_probability_of_all(model, row_cache, paths, 8), atol=1e-4)
    gray = np.asarray(Image.fromarray(cache.images[5]).convert("L"))
    gray_rgb = np.repeat(gray[None, :, :, None], 3, axis=3)
    np.testing.assert_allclose(p_all[GRAY], probability_of_all(model.predict(gray_rgb, verbose=0))[0], atol=1e-4)
    # A larger image is resized to the size the model was trained at.
    upscaled = load_resized(folder / UPSCALED, model.input_shape[1])[None]
    np.testing.assert_allclose(p_all[UPSCALED], probability_of_all(model.predict(upscaled, verbose=0))[0], atol=1e-4)

    reasons = rejected.set_index("path")["reason"]
    assert sorted(reasons.index) == sorted([TRUNCATED, TEXT])
    assert "cannot be decoded" in reasons[TRUNCATED] and "truncated" in reasons[TRUNCATED]
    assert ".bmp" in reasons[TEXT] and ".png" in reasons[TEXT]
    assert "\n" not in "".join(reasons)


def test_an_ensemble_scores_the_mean_of_its_models(tmp_path, setup):
    model_paths, _, folder = setup
    single = [
        classify_folder([path], folder, 0.5, "one", tmp_path / f"p{number}.tsv", tmp_path / f"r{number}.tsv")[0]
        for number, path in enumerate(model_paths)
    ]
    ensemble, _ = classify_folder(model_paths, folder, 0.5, "ensemble", tmp_path / "e.tsv", tmp_path / "er.tsv")
    assert not np.allclose(single[0]["p_all"], single[1]["p_all"], atol=1e-3)
    np.testing.assert_allclose(ensemble["p_all"], (single[0]["p_all"] + single[1]["p_all"]) / 2, atol=1e-7)


def test_find_images_skips_hidden_files_only(setup):
    _, _, folder = setup
    images, rejected = find_images(folder)
    assert images == sorted([*AT_SIZE, UPSCALED, GRAY, RGBA, TRUNCATED])
    assert [path for path, _ in rejected] == [TEXT]


def test_a_missing_folder_or_one_without_images_is_a_user_error(tmp_path, setup):
    model_paths, _, _ = setup
    outputs = (tmp_path / "p.tsv", tmp_path / "r.tsv")
    with pytest.raises(UserError, match="does not exist"):
        classify_folder(model_paths, tmp_path / "nowhere", 0.5, "m", *outputs)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "cut.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(UserError, match=r"No readable image.*cut\.png"):
        classify_folder(model_paths, tmp_path / "junk", 0.5, "m", *outputs)
    assert not any(path.exists() for path in outputs)


@pytest.mark.slow
def test_command_line(tmp_path, setup):
    model_paths, _, folder = setup
    environment = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    command = [sys.executable, "-m", "leukemia_dtl.model.classify", "--model", str(model_paths[0])]
    done = subprocess.run(
        [*command, "--input", str(folder), "--output", str(tmp_path / "out.tsv")],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "7 images classified" in done.stdout and "2 file(s) not read" in done.stdout
    predictions = read_tsv(tmp_path / "out.tsv")
    assert (predictions["model"] == str(model_paths[0])).all()
    in_process, _ = classify_folder([model_paths[0]], folder, 0.5, "m", tmp_path / "p.tsv", tmp_path / "r.tsv")
    np.testing.assert_allclose(predictions["p_all"].astype(float), in_process["p_all"], atol=1e-7)
    assert read_tsv(tmp_path / "rejected.tsv")["path"].tolist() == [TRUNCATED, TEXT]

    failed = subprocess.run(
        [*command, "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "none.tsv")],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert failed.returncode == 1
    assert "error: The folder to classify" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "none.tsv").exists()
