"""The grid search: the feature fast path equals training on images, the features checked like the image cache,
selection, and the DAG it makes."""

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import planned_jobs, run_snakemake
from file_faults import assert_failed_publishing_nothing, start_python, zero_row
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import FEATURES_FILE
from leukemia_dtl.data.splits import read_split
from leukemia_dtl.evaluate.tuning_heatmap import plot_tuning_heatmap
from leukemia_dtl.model.inputs import FeatureTable
from leukemia_dtl.tuning.grid_search import extract_features, train_configuration, tune_configuration
from leukemia_dtl.tuning.selection import rank_configurations, read_selected_hyperparameters, select_configuration

PAPER_GRID_SIZE = 3 * 4 * 3 * 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_name, model_options",
    [
        ("tiny", {"weights": "none", "normalization": "model", "dropout": 0.5}),
        # The real thing: a calibrated random base, and a head with BatchNormalization and two Dropouts' worth
        # of randomness to reproduce.
        ("efficientnetb3", {"weights": "none", "normalization": "model", "dropout": 0.5, "dense_units": 32}),
    ],
)
def test_fast_path_learns_the_same_head_as_training_on_images(
    tmp_path, dataset, tiny_backbone, model_name, model_options
):
    split_path, cache_dir = dataset
    common = {
        "model_name": model_name,
        "model_options": {**model_options, "batch_size": 16, "epochs": 99},
        "hyperparameters": {"learning_rate": 0.01, "optimizer": "adam", "dropout": 0.3},
        "epochs": 3,
        "seed": 5,
        "split_path": split_path,
    }
    extract_features(
        model_name=model_name,
        model_options=model_options,
        image_size=32,
        seed=5,
        split_path=split_path,
        cache_dir=cache_dir,
        out_dir=tmp_path / "features",
    )
    features = FeatureTable.open(tmp_path / "features")
    split = read_split(split_path)
    assert set(features.row_of_path.index) == set(split.loc[split["subset"].isin(["train", "val"]), "path"])

    slow_scores, slow_p_all = train_configuration(**common, cache_dir=cache_dir, image_size=32)
    fast_scores, fast_p_all = train_configuration(**common, features_dir=tmp_path / "features")

    np.testing.assert_allclose(fast_p_all, slow_p_all, atol=1e-4)
    for metric in ("val_loss", "val_accuracy", "val_auc"):
        assert fast_scores[metric] == pytest.approx(slow_scores[metric], abs=1e-4)
    # And the head did learn something: not every val image got the same probability.
    assert np.ptp(fast_p_all) > 1e-3


@pytest.mark.slow
def test_tuning_ignores_fine_tuning_and_weighs_the_loss_by_class_as_training_does(tmp_path, dataset, tiny_backbone):
    split_path, cache_dir = dataset
    model_options = {"weights": "none", "dropout": 0.5, "batch_size": 16}
    extras = {"fine_tune": {"layers": 2, "learning_rate": 1e-5, "epochs": 3}, "class_weight": "balanced"}
    extract_features(
        model_name="tiny",
        model_options={**model_options, **extras},
        image_size=32,
        seed=5,
        split_path=split_path,
        cache_dir=cache_dir,
        out_dir=tmp_path / "features",
    )
    common = {
        "model_name": "tiny",
        "hyperparameters": {"learning_rate": 0.01, "optimizer": "adam"},
        "epochs": 3,
        "seed": 5,
        "split_path": split_path,
        "features_dir": tmp_path / "features",
    }
    runs = {
        name: train_configuration(**common, model_options={**model_options, **options})
        for name, options in {
            "plain": {},
            "class weights": {"class_weight": "balanced"},
            "class weights and fine-tuning": extras,
        }.items()
    }
    np.testing.assert_array_equal(runs["class weights and fine-tuning"][1], runs["class weights"][1])
    # Weighing HEM (a third of the train images) up draws P(ALL) down.
    assert runs["class weights"][1].mean() < runs["plain"][1].mean() - 0.01


def test_tune_configuration_writes_the_configuration_and_its_scores(tmp_path, dataset, tiny_backbone):
    split_path, cache_dir = dataset
    result = tune_configuration(
        model_name="tiny",
        model_options={"weights": "none", "batch_size": 8},
        hyperparameters={"learning_rate": 0.01, "optimizer": "adamax", "dropout": 0.5},
        epochs=2,
        seed=0,
        split_path=split_path,
        cache_dir=cache_dir,
        image_size=32,
        out_path=tmp_path / "v.json",
    )
    assert (result["learning_rate"], result["optimizer"], result["dropout"], result["epochs"]) == (
        0.01,
        "adamax",
        0.5,
        2,
    )
    assert result["path"] == "images" and 0 <= result["val_accuracy"] <= 1 and result["val_loss"] > 0


def test_a_zeroed_feature_row_is_found_before_tuning_reads_it(dataset, tiny_backbone, tmp_path):
    split_path, cache_dir = dataset
    extract_features(
        model_name="tiny",
        model_options={"weights": "none", "dropout": 0.5},
        image_size=32,
        seed=0,
        split_path=split_path,
        cache_dir=cache_dir,
        out_dir=tmp_path,
    )
    FeatureTable.open(tmp_path)  # undamaged, it opens
    zero_row(tmp_path / FEATURES_FILE, 7)
    with pytest.raises(UserError, match=r"features.npy do not match .* row 7.*forcerun extract_features"):
        FeatureTable.open(tmp_path)


@pytest.mark.slow
def test_a_file_size_limit_stops_the_features_with_nothing_published(dataset, tmp_path):
    split_path, cache_dir = dataset
    out = tmp_path / "features"
    out.mkdir()
    code = (
        "from leukemia_dtl.model import classifiers\n"
        "from leukemia_dtl.tuning.grid_search import extract_features\n"
        "from model_stage_fixtures import TINY_BACKBONE\n"
        "classifiers.BACKBONES['tiny'] = TINY_BACKBONE\n"
        "extract_features(model_name='tiny', model_options={'weights': 'none', 'dropout': 0.5}, image_size=32, "
        f"seed=0, split_path={str(split_path)!r}, cache_dir={str(cache_dir)!r}, out_dir={str(out)!r})\n"
    )
    # 128 images' features take 16 KiB; the limit lets the other files the job writes through.
    process = start_python(code, file_size_limit=4096)
    assert_failed_publishing_nothing(process, out / FEATURES_FILE, "File too large")


@pytest.mark.slow
def test_a_diverged_configuration_has_no_scores_and_ranks_last(tmp_path, dataset, tiny_backbone):
    split_path, cache_dir = dataset
    arguments = {
        "model_name": "tiny",
        # A trainable base: a huge step makes its BatchNormalization, and so the loss, NaN.
        "model_options": {"weights": "none", "batch_size": 8, "freeze_base": False},
        "epochs": 2,
        "seed": 0,
        "split_path": split_path,
        "cache_dir": cache_dir,
        "image_size": 32,
    }
    sane = {"learning_rate": 0.01, "optimizer": "adamax", "dropout": 0.5}
    exploding = {**sane, "learning_rate": 1e30}
    diverged = tune_configuration(**arguments, hyperparameters=exploding, out_path=tmp_path / "diverged.json")
    assert diverged["diverged"] is True
    assert (diverged["val_auc"], diverged["val_accuracy"], diverged["val_loss"]) == (None, None, None)
    trained = tune_configuration(**arguments, hyperparameters=sane, out_path=tmp_path / "trained.json")
    assert trained["diverged"] is False

    selection = {"axes": ["learning_rate"], "metric": "val_auc", "selected_path": tmp_path / "selected.yaml"}
    ranking = select_configuration(
        [tmp_path / "diverged.json", tmp_path / "trained.json"], **selection, ranking_path=tmp_path / "ranking.tsv"
    )
    assert ranking["learning_rate"].tolist() == [0.01, 1e30]
    with pytest.raises(UserError, match=r"Every one of the 1 tuning configurations diverged.*learning_rate"):
        select_configuration([tmp_path / "diverged.json"], **selection, ranking_path=tmp_path / "only.tsv")
    assert not (tmp_path / "only.tsv").exists()


def result(order, accuracy, loss, auc=0.5, **grid):
    return {
        "model": "vgg19",
        "val_accuracy": accuracy,
        "val_loss": loss,
        "val_auc": auc,
        "epochs": 3,
        "seed": 0,
        "order": order,
        **grid,
    }


def test_ranking_breaks_ties_by_val_loss_then_grid_order():
    results = [
        result(0, 0.90, 0.40, learning_rate=0.1),
        result(1, 0.95, 0.50, learning_rate=0.01),
        result(2, 0.90, 0.30, learning_rate=0.001),
        result(3, 0.90, 0.30, learning_rate=0.0001),
    ]
    ranking = rank_configurations(results, ["learning_rate"], "val_accuracy")
    assert ranking["order"].tolist() == [1, 2, 3, 0]
    assert ranking["rank"].tolist() == [1, 2, 3, 4]
    by_loss = rank_configurations(results, ["learning_rate"], "val_loss")
    assert by_loss["order"].tolist() == [2, 3, 0, 1]


def test_an_undefined_auc_ranks_last():
    results = [result(0, 0.9, 0.3, auc=None, dropout=0.3), result(1, 0.5, 0.9, auc=0.6, dropout=0.5)]
    assert rank_configurations(results, ["dropout"], "val_auc")["order"].tolist() == [1, 0]


def test_selection_writes_the_best_configuration_for_training(tmp_path):
    import json

    paths = []
    for order, (rate, dropout, accuracy) in enumerate(
        [(0.1, 0.3, 0.7), (0.1, 0.5, 0.8), (0.01, 0.3, 0.9), (0.01, 0.5, 0.6)]
    ):
        path = tmp_path / f"{order}.json"
        path.write_text(json.dumps(result(order, accuracy, 0.5, learning_rate=rate, dropout=dropout)))
        paths.append(path)
    ranking = select_configuration(
        paths, ["learning_rate", "dropout"], "val_accuracy", tmp_path / "selected.yaml", tmp_path / "ranking.tsv"
    )
    selected = yaml.safe_load((tmp_path / "selected.yaml").read_text())
    assert selected["hyperparameters"] == {"learning_rate": 0.01, "dropout": 0.3}
    assert (selected["metric"], selected["value"], selected["configurations"]) == ("val_accuracy", 0.9, 4)
    assert read_selected_hyperparameters(tmp_path / "selected.yaml") == {"learning_rate": 0.01, "dropout": 0.3}
    assert pd.read_csv(tmp_path / "ranking.tsv", sep="\t")["rank"].tolist() == [1, 2, 3, 4]
    figure = plot_tuning_heatmap(ranking, ["learning_rate", "dropout"], "val_accuracy")
    heatmap = figure.axes[0].images[0].get_array()
    assert heatmap.shape == (2, 2) and heatmap[1, 0] == 0.9  # rows: learning rates in grid order


def test_a_selection_without_values_is_a_user_error(tmp_path):
    (tmp_path / "selected.yaml").write_text("metric: val_accuracy\n")
    with pytest.raises(UserError, match="snakemake tune"):
        read_selected_hyperparameters(tmp_path / "selected.yaml")


def dry_run(tmp_path, changes, *targets):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(changes))
    result = run_snakemake("-n", *targets, "--configfile", "config/config.yaml", str(overlay), workdir=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return planned_jobs(result.stdout)


@pytest.mark.slow
def test_paper_grid_plans_108_tuning_jobs_per_model_and_scheme(tmp_path):
    jobs = dry_run(tmp_path, {"hyperparameters": "tuned", "split": {"schemes": ["random", "patient"]}})
    assert jobs["tune_model"] == PAPER_GRID_SIZE * 2 * 2
    assert jobs["select_hyperparameters"] == 2 * 2
    # Frozen bases, no augmentation in tuning: the features are computed once per scheme and model.
    assert jobs["extract_features"] == 2 * 2
    assert jobs["train_model"] == 2 * 2 * 5


@pytest.mark.workflow
def test_configured_hyperparameters_plan_no_tuning(tmp_path):
    jobs = dry_run(tmp_path, {"hyperparameters": "config"})
    assert not {"tune_model", "select_hyperparameters", "extract_features"} & set(jobs)
    assert jobs["train_model"] == 2 * 5


@pytest.mark.slow
def test_tuning_with_augmentation_trains_on_images(tmp_path):
    jobs = dry_run(tmp_path, {"tuning": {"augmentation": True}}, "tune")
    assert jobs["tune_model"] == PAPER_GRID_SIZE * 2
    assert "extract_features" not in jobs and "train_model" not in jobs
