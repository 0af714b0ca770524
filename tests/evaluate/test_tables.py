import json

import numpy as np
import pandas as pd
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, write_json
from leukemia_dtl.evaluate import paper_values
from leukemia_dtl.evaluate.metrics import classification_metrics
from leukemia_dtl.evaluate.result_files import per_seed_metrics
from leukemia_dtl.evaluate.significance import paired_ttests
from leukemia_dtl.evaluate.tables import (
    TABLE1_METRICS,
    PredictionSets,
    leakage_table,
    table1_performance,
    table2_caption,
    table2_compute,
    write_table,
)

MODELS = ["vgg19", "efficientnetb3"]
SEEDS = [1, 2, 3]
SUBSETS = ["test", "external"]
# How far apart the classes' scores lie: the better model separates them more.
SEPARATION = {"vgg19": 1.0, "efficientnetb3": 2.5, "resnet50": 1.5}


def synthetic_predictions(model: str, seed: int, n_images: int = 120) -> pd.DataFrame:
    """A prediction table as read_predictions returns it: two ALL per HEM, p_all from a logistic score."""
    rng = np.random.default_rng([seed, int(10 * SEPARATION[model])])
    is_all = np.arange(n_images) % 3 != 0
    score = rng.normal(np.where(is_all, SEPARATION[model] / 2, -SEPARATION[model] / 2), 1.0)
    p_all = 1 / (1 + np.exp(-score))
    return pd.DataFrame(
        {
            "path": [f"img_{index}.bmp" for index in range(n_images)],
            # Five ALL patients and five HEM donors, each with many images.
            "subject": [f"{'UID' if is_all[index] else 'UID_H'}{index % 5}" for index in range(n_images)],
            "label": np.where(is_all, "ALL", "HEM"),
            "p_all": p_all,
            "pred": np.where(p_all >= 0.5, "ALL", "HEM"),
        }
    )


def write_metrics_files(folder, models=MODELS, seeds=SEEDS, subsets=SUBSETS) -> dict:
    """Metrics JSONs of every (model, seed, subset), as the evaluation step writes them."""
    files = {}
    for model in models:
        for seed in seeds:
            for offset, subset in enumerate(subsets):
                frame = synthetic_predictions(model, 10 * seed + offset)
                metrics = classification_metrics(
                    frame["label"] == "ALL",
                    frame["p_all"],
                    subjects=frame["subject"],
                    n_bootstrap=20,
                    seed=seed,
                    validation_threshold=0.4 + 0.05 * seed,
                )
                files[model, seed, subset] = folder / f"{model}_{seed}_{subset}.json"
                write_json(metrics, files[model, seed, subset])
    return files


@pytest.fixture(scope="module")
def metrics_files(tmp_path_factory):
    return write_metrics_files(tmp_path_factory.mktemp("metrics"), models=[*MODELS, "resnet50"])


@pytest.fixture(scope="module")
def per_seed(metrics_files):
    return per_seed_metrics(metrics_files)


def test_per_seed_metrics_holds_each_json_value(metrics_files, per_seed):
    assert list(per_seed.columns) == ["subset", "metric", "model", "seed", "value"]
    assert len(per_seed) == len(metrics_files) * len(TABLE1_METRICS)
    row = per_seed.query("subset == 'external' and metric == 'f1_hem' and model == 'vgg19' and seed == 2")
    expected = json.loads(metrics_files["vgg19", 2, "external"].read_text())["f1_hem"]["value"]
    assert row["value"].item() == expected


def test_per_seed_metrics_names_a_broken_file(tmp_path, metrics_files):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UserError, match=r"broken\.json"):
        per_seed_metrics({("vgg19", 1, "test"): broken})
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"accuracy": {"value": 0.9}}))
    with pytest.raises(UserError, match=r"incomplete\.json.*precision_all"):
        per_seed_metrics({("vgg19", 1, "test"): incomplete})


def _seed_values(per_seed, subset, metric, model):
    return per_seed.query("subset == @subset and metric == @metric and model == @model")["value"].to_numpy()


def test_table1_has_a_block_per_subset_with_numpy_mean_and_sd(per_seed):
    table = table1_performance(per_seed, paired_ttests(per_seed, MODELS), MODELS, SUBSETS)
    assert table["subset"].tolist() == ["test"] * 9 + ["external"] * 9
    assert table["metric"].tolist() == list(TABLE1_METRICS) * 2
    assert table["Metric"].iloc[0] == "Overall Accuracy"
    for _, row in table.iterrows():
        for model in MODELS:
            values = _seed_values(per_seed, row["subset"], row["metric"], model)
            mean, sd = np.mean(values), np.std(values, ddof=1)
            assert row[f"{model}_mean"] == pytest.approx(mean)
            assert row[f"{model}_sd"] == pytest.approx(sd)
            assert row[f"{model}_n_seeds"] == len(SEEDS)
            assert row[f"{paper_values.model_name(model)} (mean ± sd)"] == f"{mean:.3f} ± {sd:.3f}"


def test_table1_difference_is_later_model_minus_first_with_paper_beside_test_rows(per_seed):
    ttests = paired_ttests(per_seed, MODELS)
    table = table1_performance(per_seed, ttests, MODELS, SUBSETS).set_index(["subset", "metric"])
    test = ttests.set_index(["subset", "metric"]).loc[("test", "accuracy")]
    row = table.loc[("test", "accuracy")]
    pair = "efficientnetb3_vs_vgg19"
    # paired_ttests gives vgg19 minus efficientnetb3; Table 1 shows it the paper's way round.
    assert row[f"diff_{pair}"] == pytest.approx(-test["diff"])
    assert (row[f"ci_low_{pair}"], row[f"ci_high_{pair}"]) == pytest.approx((-test["ci_high"], -test["ci_low"]))
    assert (row[f"p_{pair}"], row[f"p_holm_{pair}"]) == pytest.approx((test["p_value"], test["p_holm"]))
    assert row["95% CI of difference (EfficientNet-B3 vs VGG-19)"] == (
        f"[{-test['ci_high']:.3f}, {-test['ci_low']:.3f}]"
    )
    assert (row["paper_vgg19"], row["paper_efficientnetb3"]) == (0.80, 0.96)
    assert (row["Paper VGG-19"], row["Paper EfficientNet-B3"]) == ("0.80", "0.96")
    assert (row[f"paper_ci_low_{pair}"], row[f"paper_ci_high_{pair}"]) == (0.14, 0.18)
    assert row["Paper p (EfficientNet-B3 vs VGG-19)"] == "<0.001"
    external = table.loc[("external", "accuracy")]
    assert np.isnan(external["paper_vgg19"]) and external["Paper VGG-19"] == ""
    assert external["Paper 95% CI of difference (EfficientNet-B3 vs VGG-19)"] == ""


def test_table1_with_reversed_and_extra_models(per_seed):
    models = ["efficientnetb3", "vgg19", "resnet50"]
    table = table1_performance(per_seed, paired_ttests(per_seed, models), models, ["test"]).set_index("metric")
    # The paper's CI turns round with the pair.
    row = table.loc["recall_hem"]
    assert (row["paper_ci_low_vgg19_vs_efficientnetb3"], row["paper_ci_high_vgg19_vs_efficientnetb3"]) == (
        -0.40,
        -0.36,
    )
    assert np.isnan(row["paper_ci_low_resnet50_vs_efficientnetb3"]) and np.isnan(row["paper_resnet50"])
    assert "p (resnet50 vs EfficientNet-B3)" in table.attrs["markdown_columns"]
    assert not any("vs resnet50" in column for column in table.columns)


def test_table1_names_a_missing_subset(per_seed):
    with pytest.raises(UserError, match="vgg19 on val"):
        table1_performance(per_seed, paired_ttests(per_seed, MODELS), MODELS, ["test", "val"])


def _stats(model, seed):
    train = {
        "training_seconds": 3600.0 * (seed + (model == "vgg19")),
        "seconds_per_epoch": 36.0 * seed,
        "peak_host_memory_mb": 1000.0 * seed,
        "peak_accelerator_memory_mb": None,
        "model_file_mb": 80.0 if model == "vgg19" else 43.0,
        "device": "CPU: test (4 cores usable)",
        "keras_backend": "jax",
    }
    predict = {
        "inference_ms_per_image_at_batch_size": 2.0 * seed,
        "inference_ms_per_image_at_batch_1": 5.0 * seed,
        "device": f"GPU {seed % 2}",
        "keras_backend": "jax",
    }
    return train, predict


def _split(runs):
    return {key: train for key, (train, _) in runs.items()}, {key: predict for key, (_, predict) in runs.items()}


def test_table2_summarises_seeds_beside_the_paper():
    runs = {(model, seed): _stats(model, seed) for model in MODELS for seed in SEEDS}
    table = table2_compute(*_split(runs), MODELS).set_index("quantity")
    hours = [seed + 1 for seed in SEEDS]
    assert table.loc["training_hours", "vgg19_mean"] == pytest.approx(np.mean(hours))
    assert table.loc["training_hours", "vgg19_sd"] == pytest.approx(np.std(hours, ddof=1))
    assert table.loc["training_hours", "VGG-19 (mean ± sd)"] == "3.00 ± 1.00"
    assert table.loc["training_hours", "paper_vgg19"] == 4.2
    assert table.loc["model_size_mb", "efficientnetb3_mean"] == pytest.approx(43 * 2**20 / 1e6)
    assert table.loc["model_size_mb", "Paper EfficientNet-B3"] == "48"
    assert table.loc["peak_host_memory_gb", "vgg19_mean"] == pytest.approx(2000 * 2**20 / 1e9)
    accelerator = table.loc["peak_accelerator_memory_gb"]
    assert accelerator["VGG-19 (mean ± sd)"] == "n/a" and accelerator["vgg19_n_seeds"] == 0
    assert accelerator["paper_vgg19"] == 2.1
    assert table.loc["inference_ms_per_image_batched", "vgg19_mean"] == pytest.approx(4.0)
    assert table.loc["inference_ms_per_image_batch_1", "vgg19_mean"] == pytest.approx(10.0)
    assert table.loc["inference_ms_per_image_batch_1", "paper_vgg19"] == 12.3
    assert table.loc["seconds_per_epoch", "Paper VGG-19"] == ""


def test_table2_names_its_devices_once_in_a_caption_not_per_row(tmp_path):
    runs = {(model, seed): _stats(model, seed) for model in MODELS for seed in SEEDS}
    table = table2_compute(*_split(runs), MODELS)
    assert not any("device" in column.lower() for column in table.columns)
    caption = "Measured on: training: CPU: test (4 cores usable) (jax backend); inference: GPU 1, GPU 0 (jax backend)"
    assert table.attrs["caption"] == caption
    write_table(table, tmp_path / "table2.tsv", tmp_path / "table2.md", "Table 2: computation")
    title, blank, caption_line, blank_too, header, _, *rows = (tmp_path / "table2.md").read_text().splitlines()
    assert (title, blank, caption_line, blank_too) == ("## Table 2: computation", "", caption, "")
    assert header.count(" | ") == len(table.attrs["markdown_columns"]) - 1 and "device" not in header.lower()
    assert len(rows) == len(table) and not any("GPU" in row or "CPU" in row for row in rows)
    # The TSV keeps every machine column, and no device column per row.
    assert read_tsv(tmp_path / "table2.tsv").columns.tolist() == table.columns.tolist()


def test_table2_caption_names_one_device_once_and_tolerates_stats_without_a_backend():
    train, predict = _stats("vgg19", 1)
    for stats in (train, predict):
        stats["device"] = "NVIDIA H100 80GB HBM3"
    runs = {(model, seed): (train, predict) for model in MODELS for seed in SEEDS}
    assert table2_caption(*_split(runs), MODELS) == (
        "Measured on: NVIDIA H100 80GB HBM3 (training and inference, jax backend)"
    )
    old = {key: {name: value for name, value in train.items() if name != "keras_backend"} for key in runs}
    assert table2_caption(old, old, MODELS) == "Measured on: NVIDIA H100 80GB HBM3 (training and inference)"


def test_table2_caption_lists_each_models_device_per_stage():
    runs = {(model, seed): _stats(model, seed) for model in MODELS for seed in SEEDS}
    for seed in SEEDS:
        train, predict = runs["efficientnetb3", seed]
        train |= {"device": "NVIDIA H100 80GB HBM3", "keras_backend": "tensorflow"}
        predict |= {"device": "NVIDIA H100 80GB HBM3", "keras_backend": "tensorflow"}
    assert table2_caption(*_split(runs), MODELS) == (
        "Measured on: training: CPU: test (4 cores usable) (jax backend), NVIDIA H100 80GB HBM3 (tensorflow backend); "
        "inference: GPU 1 (jax backend), GPU 0 (jax backend), NVIDIA H100 80GB HBM3 (tensorflow backend)"
    )


def test_table2_names_the_run_whose_stats_lack_a_key():
    train, predict = _stats("vgg19", 1)
    del predict["inference_ms_per_image_at_batch_1"]
    with pytest.raises(UserError, match="prediction stats of vgg19 seed 1 lack 'inference_ms_per_image_at_batch_1'"):
        table2_compute({("vgg19", 1): train}, {("vgg19", 1): predict}, ["vgg19"])


def _shifted(per_seed, shift):
    return per_seed.assign(value=per_seed["value"] + np.where(per_seed["subset"] == "test", shift, 0.0))


def test_leakage_table_differences(per_seed):
    by_scheme = {"random": _shifted(per_seed, 0.05), "patient": per_seed}
    table = leakage_table(by_scheme).set_index(["model", "metric"])
    assert list(table.columns) == [
        "Metric",
        "test_random",
        "test_patient",
        "external_random",
        "external_patient",
        "test_random_minus_test_patient",
        "test_random_minus_external_random",
        "test_patient_minus_external_patient",
    ]
    assert len(table) == 3 * len(TABLE1_METRICS)
    row = table.loc[("efficientnetb3", "roc_auc")]
    test_patient = _seed_values(per_seed, "test", "roc_auc", "efficientnetb3").mean()
    external = _seed_values(per_seed, "external", "roc_auc", "efficientnetb3").mean()
    assert row["test_patient"] == pytest.approx(test_patient)
    assert row["test_random_minus_test_patient"] == pytest.approx(row["test_random"] - row["test_patient"])
    assert row["test_random_minus_test_patient"] == pytest.approx(0.05)
    assert row["test_patient_minus_external_patient"] == pytest.approx(test_patient - external)


def test_leakage_table_needs_both_schemes(per_seed):
    with pytest.raises(UserError, match="patient"):
        leakage_table({"random": per_seed})


def test_write_table_writes_tsv_and_markdown(tmp_path, per_seed):
    table = table1_performance(per_seed, paired_ttests(per_seed, MODELS), MODELS, SUBSETS)
    write_table(table, tmp_path / "table1.tsv", tmp_path / "table1.md", "Table 1: performance")
    assert read_tsv(tmp_path / "table1.tsv").columns.tolist() == table.columns.tolist()
    lines = (tmp_path / "table1.md").read_text().splitlines()
    assert lines[0] == "## Table 1: performance"
    header, separator, *rows = lines[2:]
    assert header.split(" | ")[:4] == ["| Subset", "Metric", "Predictions", "VGG-19 (mean ± sd)"]
    assert header.count(" | ") == len(table.attrs["markdown_columns"]) - 1
    assert {cell.strip() for cell in separator.strip("|").split("|")} == {"---"}
    assert len(rows) == len(table)
    assert rows[0].startswith("| test | Overall Accuracy | seeds | ")


def test_markdown_escapes_pipes_and_right_aligns_numbers(tmp_path):
    frame = pd.DataFrame({"name": ["a|b"], "value": [0.12345]})
    write_table(frame, tmp_path / "t.tsv", tmp_path / "t.md", "T")
    assert (tmp_path / "t.md").read_text().splitlines()[2:] == [
        "| name | value |",
        "| --- | ---: |",
        "| a\\|b | 0.123 |",
    ]


def _metrics_by_run(metrics_files) -> dict:
    return {key: json.loads(path.read_text()) for key, path in metrics_files.items()}


def _ensemble_metrics(models=MODELS, subsets=SUBSETS, shift=0.0) -> dict:
    """Metrics of each model's mean p_all over the seeds, as the evaluate step scores the ensemble set."""
    metrics = {}
    for model in models:
        for offset, subset in enumerate(subsets):
            frames = [synthetic_predictions(model, 10 * seed + offset) for seed in SEEDS]
            p_all = np.clip(np.mean([frame["p_all"] for frame in frames], axis=0) + shift, 0, 1)
            metrics[model, subset] = classification_metrics(
                frames[0]["label"] == "ALL", p_all, subjects=frames[0]["subject"], n_bootstrap=50, seed=0
            )
    return metrics


@pytest.fixture(scope="module")
def prediction_sets(metrics_files):
    seeds = {key: value for key, value in _metrics_by_run(metrics_files).items() if key[0] in MODELS}
    return PredictionSets(seeds=seeds, ensemble=_ensemble_metrics(), subject_ci_subsets=["external"])


def test_table1_keeps_the_paper_rows_and_adds_ensemble_and_validation_threshold_rows(per_seed, prediction_sets):
    ttests = paired_ttests(per_seed, MODELS)
    paper = table1_performance(per_seed, ttests, MODELS, SUBSETS)
    table = table1_performance(per_seed, ttests, MODELS, SUBSETS, prediction_sets)
    kinds = ["seeds"] * 9 + ["ensemble"] * 9 + ["seeds, validation threshold"] * 8
    assert table["predictions"].tolist() == kinds * 2 and table["Predictions"].tolist() == kinds * 2
    assert table["subset"].tolist() == ["test"] * 26 + ["external"] * 26
    # The paper's rows are unchanged, column for column.
    seeds_rows = table[table["predictions"] == "seeds"].reset_index(drop=True)
    pd.testing.assert_frame_equal(seeds_rows[paper.columns], paper)
    assert table.attrs["markdown_columns"][:7] == [
        "Subset",
        "Metric",
        "Predictions",
        "VGG-19 (mean ± sd)",
        "VGG-19 image 95% CI",
        "VGG-19 subject 95% CI",
        "Paper VGG-19",
    ]
    assert seeds_rows["VGG-19 image 95% CI"].eq("").all() and seeds_rows["vgg19_ci_low"].isna().all()


def test_table1_ensemble_rows_hold_the_ensemble_value_and_both_intervals(per_seed, prediction_sets):
    table = table1_performance(per_seed, paired_ttests(per_seed, MODELS), MODELS, SUBSETS, prediction_sets)
    rows = table[table["predictions"] == "ensemble"].set_index(["subset", "metric"])
    external = prediction_sets.ensemble["efficientnetb3", "external"]["roc_auc"]
    row = rows.loc[("external", "roc_auc")]
    assert row["efficientnetb3_mean"] == external["value"]
    assert (row["efficientnetb3_ci_low"], row["efficientnetb3_ci_high"]) == (external["ci_low"], external["ci_high"])
    assert (row["efficientnetb3_subject_ci_low"], row["efficientnetb3_subject_ci_high"]) == (
        external["subject_ci_low"],
        external["subject_ci_high"],
    )
    assert row["EfficientNet-B3 (mean ± sd)"] == f"{external['value']:.3f}"
    assert row["EfficientNet-B3 subject 95% CI"] == (
        f"[{external['subject_ci_low']:.3f}, {external['subject_ci_high']:.3f}]"
    )
    assert np.isnan(row["efficientnetb3_sd"]) and row["efficientnetb3_n_seeds"] is pd.NA
    # Subject intervals only where subjects are independent of training; the image interval everywhere.
    test = rows.loc[("test", "accuracy")]
    assert test["VGG-19 subject 95% CI"] == "" and np.isnan(test["vgg19_subject_ci_low"])
    assert test["vgg19_ci_low"] == prediction_sets.ensemble["vgg19", "test"]["accuracy"]["ci_low"]
    # No paper values and no seed comparisons beside the ensemble.
    assert test["Paper VGG-19"] == "" and np.isnan(test["paper_vgg19"])
    assert test["p (EfficientNet-B3 vs VGG-19)"] == "" and np.isnan(test["p_efficientnetb3_vs_vgg19"])


def test_table1_validation_threshold_rows_average_each_seeds_rescored_metrics(metrics_files, per_seed, prediction_sets):
    table = table1_performance(per_seed, paired_ttests(per_seed, MODELS), MODELS, SUBSETS, prediction_sets)
    rows = table[table["predictions"] == "seeds, validation threshold"].set_index(["subset", "metric"])
    assert "roc_auc" not in rows.loc["test"].index
    runs = _metrics_by_run(metrics_files)
    values = [runs["vgg19", seed, "test"]["at_validation_threshold"]["recall_hem"]["value"] for seed in SEEDS]
    row = rows.loc[("test", "recall_hem")]
    assert row["vgg19_mean"] == pytest.approx(np.mean(values))
    assert row["vgg19_sd"] == pytest.approx(np.std(values, ddof=1))
    assert row["vgg19_n_seeds"] == 3
    assert row["VGG-19 (mean ± sd)"] == f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def test_table1_adds_tta_rows_when_given(metrics_files, per_seed, prediction_sets):
    runs = {key: value for key, value in _metrics_by_run(metrics_files).items() if key[0] in MODELS}
    sets = PredictionSets(
        seeds=prediction_sets.seeds,
        ensemble=prediction_sets.ensemble,
        tta_seeds=runs,
        tta_ensemble=_ensemble_metrics(shift=0.05),
        subject_ci_subsets=["test", "external"],
    )
    table = table1_performance(per_seed, paired_ttests(per_seed, MODELS), MODELS, ["external"], sets)
    counts = table["predictions"].value_counts().to_dict()
    assert counts == {"seeds": 9, "ensemble": 9, "seeds, validation threshold": 8, "TTA seeds": 9, "TTA ensemble": 9}
    row = table[table["predictions"] == "TTA ensemble"].set_index("metric").loc["accuracy"]
    assert row["vgg19_mean"] == sets.tta_ensemble["vgg19", "external"]["accuracy"]["value"]
    assert row["vgg19_subject_ci_low"] == sets.tta_ensemble["vgg19", "external"]["accuracy"]["subject_ci_low"]
    tta_seeds = table[table["predictions"] == "TTA seeds"].set_index("metric").loc["f1_all"]
    assert tta_seeds["vgg19_mean"] == pytest.approx(_seed_values(per_seed, "external", "f1_all", "vgg19").mean())


def test_table1_caption_names_units_and_thresholds(tmp_path, per_seed, prediction_sets):
    table = table1_performance(per_seed, paired_ttests(per_seed, MODELS), MODELS, SUBSETS, prediction_sets)
    caption = table.attrs["caption"]
    assert "Mean ± sd is over seeds (training variance)" in caption
    assert "95% percentile bootstrap intervals, resampling images, or subjects" in caption
    assert "(shown for external:" in caption
    assert "treat the seed as the independent unit" in caption
    assert "p_all >= 0.5;" in caption
    # The seeds' validation thresholds, 0.4 + 0.05 * seed.
    assert "val predictions (0.45 to 0.55)" in caption
    write_table(table, tmp_path / "t1.tsv", tmp_path / "t1.md", "Table 1")
    lines = (tmp_path / "t1.md").read_text().splitlines()
    assert lines[2] == caption and len(lines) == 6 + len(table)
    assert read_tsv(tmp_path / "t1.tsv")["vgg19_n_seeds"].tolist()[9:11] == ["", ""]


def test_table1_names_missing_or_outdated_prediction_sets(per_seed, prediction_sets):
    ttests = paired_ttests(per_seed, MODELS)
    partial = {key: value for key, value in prediction_sets.ensemble.items() if key != ("vgg19", "external")}
    sets = PredictionSets(seeds=prediction_sets.seeds, ensemble=partial)
    with pytest.raises(UserError, match="No ensemble metrics for vgg19 on external"):
        table1_performance(per_seed, ttests, MODELS, SUBSETS, sets)
    outdated = {key: dict(value) for key, value in prediction_sets.seeds.items()}
    del outdated["efficientnetb3", 2, "test"]["at_validation_threshold"]
    sets = PredictionSets(seeds=outdated, ensemble=prediction_sets.ensemble)
    with pytest.raises(
        UserError, match="metrics of efficientnetb3 seed 2 on test lack 'accuracy' under 'at_validation_threshold'"
    ):
        table1_performance(per_seed, ttests, MODELS, SUBSETS, sets)
