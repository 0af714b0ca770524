"""Predictions per held-out subset: one row per split image, P(ALL) in [0, 1], and inference timings."""

import json

import keras
import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.vocabulary import PREDICTED_SUBSETS, PREDICTION_COLUMNS
from leukemia_dtl.model import classifiers
from leukemia_dtl.model.inference import predict_subsets, probability_of_all
from leukemia_dtl.model.inputs import ImageCache, read_split
from model_stage_fixtures import TINY_BACKBONE, write_synthetic_dataset


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """An untrained sigmoid-head classifier (tiny backbone, VGG-19 head) with outputs on both sides of 0.5."""
    directory = tmp_path_factory.mktemp("prediction")
    split_path, cache_dir = write_synthetic_dataset(directory)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(classifiers.BACKBONES, "tiny", TINY_BACKBONE)
        model = classifiers.build_classifier("tiny", image_size=32, weights="none", dropout=0.5)
    pooled = classifiers.feature_extractor(model).predict(np.load(cache_dir / "images.npy"), verbose=0)
    kernel = np.random.default_rng(0).normal(0, 1, (pooled.shape[1], 2))
    # Centred logits put about half the images on each side of the 0.5 threshold.
    model.get_layer("predictions").set_weights([kernel, -np.median(pooled @ kernel, axis=0)])
    model_path = directory / "model.keras"
    classifiers.save_model(model, model_path)
    return model_path, split_path, cache_dir


def test_probability_of_all_normalises_the_two_outputs():
    outputs = np.array([[0.2, 0.6], [0.3, 0.7], [0.0, 0.0], [1.0, 1e-9]])
    np.testing.assert_allclose(probability_of_all(outputs), [0.75, 0.7, 0.5, 1e-9], rtol=1e-6)


def test_one_prediction_per_split_image(tmp_path, saved_model):
    model_path, split_path, cache_dir = saved_model
    out_paths = {subset: tmp_path / f"{subset}.tsv" for subset in PREDICTED_SUBSETS}
    stats = predict_subsets(model_path, split_path, cache_dir, 8, out_paths, tmp_path / "stats.json", timing_images=16)

    split = read_split(split_path)
    model = keras.saving.load_model(model_path)
    cache = ImageCache.open(cache_dir)
    for subset, path in out_paths.items():
        table = read_tsv(path)
        expected = split[split["subset"] == subset]
        assert list(table.columns) == list(PREDICTION_COLUMNS)
        assert (
            table[["path", "subject", "label"]].values.tolist()
            == expected[["path", "subject", "label"]].values.tolist()
        )
        p_all = table["p_all"].astype(float).to_numpy()
        assert ((p_all >= 0) & (p_all <= 1)).all()
        assert (table["pred"] == np.where(p_all >= 0.5, "ALL", "HEM")).all()
        outputs = model.predict(np.asarray(cache.images[cache.rows_for(table["path"])]), verbose=0)
        np.testing.assert_allclose(p_all, outputs[:, 1] / outputs.sum(axis=1), rtol=1e-5)
    assert {"ALL", "HEM"} <= set(read_tsv(out_paths["val"])["pred"])

    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    assert stats["inference_ms_per_image_at_batch_size"] > 0 and stats["inference_ms_per_image_at_batch_1"] > 0
    assert stats["timing_images"] == 16
    assert stats["images_predicted"] == {"val": 32, "test": 24, "external": 16}


def test_an_empty_subset_gives_a_header_only_table(tmp_path, saved_model):
    model_path, split_path, cache_dir = saved_model
    split = read_tsv(split_path)
    split[split["subset"] != "external"].to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    out_paths = {subset: tmp_path / f"{subset}.tsv" for subset in PREDICTED_SUBSETS}
    predict_subsets(
        model_path, tmp_path / "split.tsv", cache_dir, 8, out_paths, tmp_path / "stats.json", timing_images=8
    )
    assert read_tsv(out_paths["external"]).empty
    assert list(read_tsv(out_paths["external"]).columns) == list(PREDICTION_COLUMNS)


def test_split_images_missing_from_the_cache_are_a_user_error(tmp_path, saved_model):
    model_path, split_path, cache_dir = saved_model
    split = read_tsv(split_path)
    split.loc[0, ["path", "subset"]] = ["val/not_cached.bmp", "val"]
    split.to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    with pytest.raises(UserError, match=r"not_cached\.bmp"):
        predict_subsets(
            model_path, tmp_path / "split.tsv", cache_dir, 8, {"val": tmp_path / "val.tsv"}, tmp_path / "s.json"
        )
