"""Predictions per held-out subset: one row per split image, P(ALL) in [0, 1], and inference timings; test-time
augmentation over the dihedral group; the final-phase images' predictions and the challenge submission that
averages them over the seeds."""

import itertools
import json

import keras
import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, row_checksums, write_cache_index, write_tsv
from leukemia_dtl.core.format_versions import FORMAT_VERSION_KEY
from leukemia_dtl.core.vocabulary import (
    CACHE_IMAGES_FILE,
    INDEX_FILE,
    PLAIN,
    PREDICTED_SUBSETS,
    PREDICTION_COLUMNS,
    TTA,
)
from leukemia_dtl.data.splits import read_split
from leukemia_dtl.model import classifiers
from leukemia_dtl.model.challenge_submission import challenge_submission, final_phase_order, write_submission
from leukemia_dtl.model.inference import (
    DIHEDRAL_TRANSFORMS,
    PredictionFiles,
    dihedral_transform,
    inference_ms_per_image,
    predict_probability_of_all,
    predict_run,
    probability_of_all,
)
from leukemia_dtl.model.inputs import ImageCache
from model_stage_fixtures import TINY_BACKBONE, write_synthetic_dataset

FOLDER = "testing_data/C-NMC_test_final_phase_data"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """An untrained classifier (tiny backbone, VGG-19 head) with P(ALL) on both sides of 0.5."""
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


def test_probability_of_all_is_the_softmax_of_the_logits_in_float64():
    logits = np.array([[0.0, 0.0], [0.0, np.log(3.0)], [5.0, 5.0 + np.log(0.25)], [1000.0, -1000.0], [-800.0, 800.0]])
    assert probability_of_all(logits.astype(np.float32)).dtype == np.float64
    p_all = probability_of_all(logits)
    # By hand, and by SciPy: logits far apart neither overflow nor give NaN.
    np.testing.assert_allclose(p_all, [0.5, 0.75, 0.2, 0.0, 1.0], rtol=1e-7, atol=1e-300)
    np.testing.assert_allclose(p_all, softmax(logits, axis=1)[:, 1], rtol=1e-12)
    # A common shift of both logits changes no probability.
    np.testing.assert_allclose(probability_of_all(logits[:3] + 7.0), p_all[:3], rtol=1e-12)


def test_one_prediction_per_split_image(tmp_path, saved_model):
    model_path, split_path, cache_dir = saved_model
    out_paths = {subset: tmp_path / f"{subset}.tsv" for subset in PREDICTED_SUBSETS}
    stats = predict_run(
        model_path,
        split_path,
        cache_dir,
        8,
        {PLAIN: PredictionFiles(out_paths, tmp_path / "stats.json")},
        timing_images=16,
    )[PLAIN]

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
        logits = model.predict(np.asarray(cache.images[cache.rows_for(table["path"])]), verbose=0)
        np.testing.assert_allclose(p_all, softmax(logits.astype(np.float64), axis=1)[:, 1], rtol=1e-5)
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
    predict_run(
        model_path, tmp_path / "split.tsv", cache_dir, 8, {PLAIN: PredictionFiles(out_paths, tmp_path / "s.json")}
    )
    assert read_tsv(out_paths["external"]).empty
    assert list(read_tsv(out_paths["external"]).columns) == list(PREDICTION_COLUMNS)


def test_split_images_missing_from_the_cache_are_a_user_error(tmp_path, saved_model):
    model_path, split_path, cache_dir = saved_model
    split = read_tsv(split_path)
    split.loc[0, ["path", "subset"]] = ["val/not_cached.bmp", "val"]
    split.to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    with pytest.raises(UserError, match=r"not_cached\.bmp"):
        predict_run(
            model_path,
            tmp_path / "split.tsv",
            cache_dir,
            8,
            {PLAIN: PredictionFiles({"val": tmp_path / "val.tsv"}, tmp_path / "s.json")},
        )


def _eight_views(images: np.ndarray) -> list[np.ndarray]:
    return [dihedral_transform(images, quarter_turns, flip) for quarter_turns, flip in DIHEDRAL_TRANSFORMS]


def test_the_eight_transforms_are_the_symmetry_group_of_the_square():
    image = np.arange(16).reshape(1, 4, 4, 1)
    views = _eight_views(image)
    keys = [view.tobytes() for view in views]
    assert len(set(keys)) == 8
    np.testing.assert_array_equal(views[0], image)  # the identity, i.e. the plain prediction, comes first
    # Closed under composition, and holding the transpose and the left-right flip (two reflections of D4).
    for first, second in itertools.product(DIHEDRAL_TRANSFORMS, repeat=2):
        assert dihedral_transform(dihedral_transform(image, *first), *second).tobytes() in keys
    assert image.transpose(0, 2, 1, 3).tobytes() in keys
    assert image[:, :, ::-1].tobytes() in keys


def test_one_load_writes_the_plain_and_tta_sets_and_the_final_phase(tmp_path, saved_model):
    model_path, split_path, cache_dir = saved_model
    final_dir, _ = _final_phase_cache(tmp_path / "final_phase", ImageCache.open(cache_dir), 12)
    outputs = {
        kind: PredictionFiles(
            {subset: tmp_path / kind / f"{subset}.tsv" for subset in PREDICTED_SUBSETS},
            tmp_path / kind / "stats.json",
            tmp_path / kind / "final_phase.tsv",
        )
        for kind in (PLAIN, TTA)
    }
    for kind in outputs:
        (tmp_path / kind).mkdir()
    stats = predict_run(model_path, split_path, cache_dir, 8, outputs, final_phase_cache=final_dir, timing_images=8)

    model = keras.saving.load_model(model_path)
    cache = ImageCache.open(cache_dir)
    table = read_tsv(outputs[TTA].subsets["val"])
    images = np.asarray(cache.images[cache.rows_for(table["path"])])
    per_view = [probability_of_all(model.predict(view, verbose=0)) for view in _eight_views(images)]
    p_all = table["p_all"].astype(float).to_numpy()
    np.testing.assert_allclose(p_all, np.mean(per_view, axis=0), rtol=1e-5)
    # The untrained convnet is not invariant, so the mean is not the plain prediction.
    assert np.abs(p_all - per_view[0]).max() > 1e-3
    np.testing.assert_allclose(read_tsv(outputs[PLAIN].subsets["val"])["p_all"].astype(float), per_view[0], rtol=1e-5)
    assert (table["pred"] == np.where(p_all >= 0.5, "ALL", "HEM")).all()
    assert stats[TTA]["test_time_augmentation"] is True and stats[TTA]["passes_per_image"] == 8
    assert stats[PLAIN]["test_time_augmentation"] is False and stats[PLAIN]["passes_per_image"] == 1
    for kind in (PLAIN, TTA):
        assert json.loads(outputs[kind].stats.read_text()) == stats[kind]

    # The final-phase images in number order (the cache lists them in string order), each kind's P(ALL).
    final_cache = ImageCache.open(final_dir)
    final_images = np.asarray(
        final_cache.images[final_cache.rows_for(pd.Series([f"{FOLDER}/{n}.bmp" for n in range(1, 13)]))]
    )
    final_views = [probability_of_all(model.predict(view, verbose=0)) for view in _eight_views(final_images)]
    for kind, expected in ((PLAIN, final_views[0]), (TTA, np.mean(final_views, axis=0))):
        final = read_tsv(outputs[kind].final_phase)
        assert final["path"].tolist() == [f"{FOLDER}/{n}.bmp" for n in range(1, 13)]
        np.testing.assert_allclose(final["p_all"].astype(float), expected, rtol=1e-5)


class _CallRecorder:
    """Stands in for a model where only the calls matter: records each predict_on_batch input."""

    def __init__(self):
        self.calls = []

    def predict_on_batch(self, batch):
        self.calls.append(np.array(batch))
        return np.zeros((len(batch), 2))


@pytest.mark.parametrize(
    ("batch_size", "tta", "call_sizes"),
    [(4, False, [4, 4]), (4, True, [4] * 16), (1, False, [1] * 10), (1, True, [8] * 10)],
)
def test_timing_calls_hold_whole_batches_and_with_tta_every_view(batch_size, tta, call_sizes):
    images = np.random.default_rng(0).integers(0, 255, (10, 4, 4, 3), dtype=np.uint8)
    recorder = _CallRecorder()
    assert inference_ms_per_image(recorder, images, batch_size, tta) > 0
    warm_up, *timed = recorder.calls
    # Only full batches are timed (8 of the 10 images at batch 4), after one warm-up call of the same shape.
    assert [len(call) for call in timed] == call_sizes and warm_up.shape == timed[0].shape
    if tta and batch_size == 1:
        # One image per call: its eight views together, as a single image is served.
        for index, call in enumerate(timed):
            np.testing.assert_array_equal(call, np.concatenate(_eight_views(images[index : index + 1])))


def _pooled_colour_model(kernel: np.ndarray) -> keras.Model:
    """Logits of the mean colour: a model every dihedral transform leaves unchanged."""
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(2, name="predictions")
    model = keras.Model(inputs, dense(pooled))
    dense.set_weights([kernel, np.zeros(2)])
    return model


def test_a_model_invariant_to_the_transforms_keeps_its_plain_p_all(saved_model):
    _, split_path, cache_dir = saved_model
    model = _pooled_colour_model(np.array([[4.0, -4.0], [-4.0, 4.0], [3.0, -3.0]]))
    cache, paths = ImageCache.open(cache_dir), read_split(split_path)["path"]
    plain = predict_probability_of_all(model, cache, paths, 8)
    augmented = predict_probability_of_all(model, cache, paths, 8, test_time_augmentation=True)
    assert plain.std() > 0.01  # the colour decides, so the test is not passed by a constant
    np.testing.assert_allclose(augmented, plain, rtol=1e-5)


def test_tta_still_refuses_outputs_that_are_not_finite(saved_model):
    _, split_path, cache_dir = saved_model
    model = _pooled_colour_model(np.full((3, 2), np.nan))
    cache, paths = ImageCache.open(cache_dir), read_split(split_path)["path"]
    with pytest.raises(UserError, match="is not finite for 168 of 168 images"):
        predict_probability_of_all(model, cache, paths, 8, test_time_augmentation=True)


def _final_phase_cache(directory, source_cache: ImageCache, count: int):
    """A final-phase cache of ``count`` images named 1.bmp .. count.bmp, its index in string order (as a
    directory listing gives it: 1, 10, 11, 2, ...)."""
    names = sorted(f"{number}.bmp" for number in range(1, count + 1))
    images = np.asarray(source_cache.images[:count])
    directory.mkdir()
    np.save(directory / CACHE_IMAGES_FILE, images)
    write_cache_index(
        [f"{FOLDER}/{name}" for name in names],
        directory / INDEX_FILE,
        row_checksums(images),
    )
    return directory, names


def test_the_submission_is_the_seeds_mean_call_in_number_order(tmp_path):
    paths = [f"{FOLDER}/{n}.bmp" for n in range(1, 13)]
    seeds = [np.linspace(0.05, 0.95, 12), np.linspace(0.15, 0.85, 12) ** 2]
    seed_files = []
    for seed, p_all in enumerate(seeds):
        seed_files.append(tmp_path / f"seed{seed}.tsv")
        write_tsv(pd.DataFrame({"path": paths, "p_all": p_all}), seed_files[-1])

    table = challenge_submission(seed_files, 0.5, tmp_path / "isbi_valid.predict", tmp_path / "final_phase.tsv")
    expected = (seeds[0] + seeds[1]) / 2
    written = read_tsv(tmp_path / "final_phase.tsv")
    assert written["image"].tolist() == [f"{n}.bmp" for n in range(1, 13)]
    np.testing.assert_array_equal(written["p_all"].astype(float), expected)
    lines = (tmp_path / "isbi_valid.predict").read_text().splitlines()
    assert lines == ["1" if p >= 0.5 else "0" for p in expected]
    assert set(lines) == {"0", "1"}
    assert table["call"].tolist() == ["ALL" if p >= 0.5 else "HEM" for p in expected]


def test_seeds_that_predicted_other_final_phase_images_are_a_user_error(tmp_path):
    for seed, count in ((0, 3), (1, 4)):
        paths = [f"{FOLDER}/{n}.bmp" for n in range(1, count + 1)]
        write_tsv(pd.DataFrame({"path": paths, "p_all": 0.5}), tmp_path / f"seed{seed}.tsv")
    with pytest.raises(UserError, match=r"seed1\.tsv predicts other final-phase images than .*seed0\.tsv"):
        challenge_submission([tmp_path / "seed0.tsv", tmp_path / "seed1.tsv"], 0.5, tmp_path / "s", tmp_path / "p.tsv")
    assert not (tmp_path / "s").exists()


def _predict_with_final_phase(tmp_path, model_path, split_path, cache_dir, final_dir):
    files = PredictionFiles({"val": tmp_path / "val.tsv"}, tmp_path / "s.json", tmp_path / "final.tsv")
    predict_run(model_path, split_path, cache_dir, 8, {PLAIN: files}, final_phase_cache=final_dir)


def test_a_final_phase_cache_with_a_missing_image_fails_before_predicting(tmp_path, saved_model):
    model_path, split_path, cache_dir = saved_model
    final_dir, _ = _final_phase_cache(tmp_path / "final_phase", ImageCache.open(cache_dir), 3)
    index = read_tsv(final_dir / INDEX_FILE)
    index.loc[index["path"].str.endswith("/2.bmp"), "path"] = f"{FOLDER}/4.bmp"
    index.to_csv(final_dir / INDEX_FILE, sep="\t", index=False)
    with pytest.raises(UserError, match=r"1 missing number\(s\) \[2\]"):
        _predict_with_final_phase(tmp_path, model_path, split_path, cache_dir, final_dir)
    assert not {"val.tsv", "s.json", "final.tsv"} & {path.name for path in tmp_path.iterdir()}


def test_a_final_phase_cache_of_an_older_version_names_its_own_rule(tmp_path, saved_model):
    model_path, split_path, cache_dir = saved_model
    final_dir, _ = _final_phase_cache(tmp_path / "final_phase", ImageCache.open(cache_dir), 3)
    index = read_tsv(final_dir / INDEX_FILE).drop(columns=FORMAT_VERSION_KEY)
    index.to_csv(final_dir / INDEX_FILE, sep="\t", index=False)
    with pytest.raises(
        UserError, match=r"older version of the workflow; rebuild: snakemake --forcerun build_final_phase"
    ):
        _predict_with_final_phase(tmp_path, model_path, split_path, cache_dir, final_dir)


def test_final_phase_images_go_in_number_order_not_string_order():
    paths = [f"{FOLDER}/{name}.bmp" for name in (10, 2, 1, 9, 11, 3, 4, 5, 6, 7, 8)]
    order = final_phase_order(paths)
    assert [paths[position].split("/")[-1] for position in order] == [f"{n}.bmp" for n in range(1, 12)]


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (["1.bmp", "3.bmp"], r"0 other name\(s\) \[\] and 1 missing number\(s\) \[2\]"),
        (["1.bmp", "1.bmp"], r"1 missing number\(s\) \[2\]"),
        (["1.bmp", "02.bmp"], r"1 other name\(s\) \['02.bmp'\]"),
        (["1.bmp", "2.png"], r"1 other name\(s\) \['2.png'\]"),
        (["0.bmp", "1.bmp"], r"1 other name\(s\) \['0.bmp'\]"),
    ],
)
def test_names_other_than_one_to_n_are_a_user_error(names, problem):
    with pytest.raises(UserError, match=f"must be named 1.bmp to {len(names)}.bmp.*{problem}"):
        final_phase_order([f"{FOLDER}/{name}" for name in names])


def test_submission_lines_are_the_calls_in_number_order(tmp_path):
    names = ["2.bmp", "10.bmp", "1.bmp", "9.bmp", "3.bmp", "4.bmp", "5.bmp", "6.bmp", "7.bmp", "8.bmp"]
    # p_all of image n is n / 10, so at threshold 0.5 images 5..10 are ALL (5.bmp exactly at the threshold).
    p_all = [int(name.split(".")[0]) / 10 for name in names]
    table = write_submission(
        [f"{FOLDER}/{name}" for name in names], p_all, 0.5, tmp_path / "isbi_valid.predict", tmp_path / "final.tsv"
    )
    assert (tmp_path / "isbi_valid.predict").read_text() == "0\n0\n0\n0\n1\n1\n1\n1\n1\n1\n"
    written = read_tsv(tmp_path / "final.tsv")
    assert list(written.columns) == ["image", "p_all", "call"]
    assert written["image"].tolist() == [f"{n}.bmp" for n in range(1, 11)]
    np.testing.assert_allclose(written["p_all"].astype(float), np.arange(1, 11) / 10)
    assert written["call"].tolist() == ["HEM"] * 4 + ["ALL"] * 6
    assert table["image"].tolist() == written["image"].tolist()
