"""Table 1 in the paper's shape (table1_performance) and beyond it (table1_extended), from per-seed metrics, the
seed ensembles' metrics and the subject-level comparisons."""

import json

import numpy as np
import pandas as pd
import pytest

from evaluation_results import MODELS, SEEDS, SUBSETS, seed_values, synthetic_predictions, write_metrics_files
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, write_tsv
from leukemia_dtl.evaluate import paper_values
from leukemia_dtl.evaluate.formatting import write_table
from leukemia_dtl.evaluate.metrics import classification_metrics
from leukemia_dtl.evaluate.result_files import per_seed_metrics, write_metrics
from leukemia_dtl.evaluate.significance import paired_ttests
from leukemia_dtl.evaluate.table1 import (
    TABLE1_METRICS,
    EnsembleComparisons,
    PredictionSets,
    table1_extended,
    table1_performance,
)


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
    write_metrics({"accuracy": {"value": 0.9}}, incomplete)
    with pytest.raises(UserError, match=r"incomplete\.json.*precision_all"):
        per_seed_metrics({("vgg19", 1, "test"): incomplete})


# The seeds' thresholds, as the script reads them from the metrics files.
THRESHOLDS = [0.5] * len(SEEDS)
PAIR = "EfficientNet-B3 vs VGG-19"


def _table1(per_seed, models=MODELS, subsets=SUBSETS):
    return table1_performance(per_seed, paired_ttests(per_seed, models), models, subsets, THRESHOLDS)


def test_table1_is_the_papers_table_per_subset_with_numpy_mean_and_sd(per_seed):
    table = _table1(per_seed)
    assert table.attrs["markdown_columns"] == [
        "Subset",
        "Metric",
        "VGG-19 (mean ± sd)",
        "Paper VGG-19",
        "EfficientNet-B3 (mean ± sd)",
        "Paper EfficientNet-B3",
        f"{PAIR}, training-noise t-test: difference [95% CI]",
        f"{PAIR}, training-noise t-test: p (Holm p)",
        f"{PAIR}, paper: p",
        f"{PAIR}, paper: 95% CI",
    ]
    # The machine columns stay as they were; the other prediction sets have moved to table1_extended.
    pair = "efficientnetb3_vs_vgg19"
    assert table.columns[10:].tolist() == [
        "subset",
        "metric",
        *(f"{model}_{name}" for model in ("vgg19",) for name in ("mean", "sd", "n_seeds")),
        "paper_vgg19",
        *(f"efficientnetb3_{name}" for name in ("mean", "sd", "n_seeds")),
        "paper_efficientnetb3",
        *(f"{name}_{pair}" for name in ("diff", "ci_low", "ci_high", "p", "p_holm", "paper_ci_low", "paper_ci_high")),
    ]
    assert table["subset"].tolist() == ["test"] * 9 + ["external"] * 9
    assert table["metric"].tolist() == list(TABLE1_METRICS) * 2
    assert table["Metric"].tolist()[:9] == [row.label for row in paper_values.TABLE1.values()]
    for _, row in table.iterrows():
        for model in MODELS:
            values = seed_values(per_seed, row["subset"], row["metric"], model)
            mean, sd = np.mean(values), np.std(values, ddof=1)
            assert row[f"{model}_mean"] == pytest.approx(mean)
            assert row[f"{model}_sd"] == pytest.approx(sd)
            assert row[f"{model}_n_seeds"] == len(SEEDS)
            assert row[f"{paper_values.model_name(model)} (mean ± sd)"] == f"{mean:.3f} ± {sd:.3f}"


def test_table1_difference_is_later_model_minus_first_with_paper_beside_test_rows(per_seed):
    ttests = paired_ttests(per_seed, MODELS)
    table = _table1(per_seed).set_index(["subset", "metric"])
    test = ttests.set_index(["subset", "metric"]).loc[("test", "accuracy")]
    row = table.loc[("test", "accuracy")]
    pair = "efficientnetb3_vs_vgg19"
    # paired_ttests gives vgg19 minus efficientnetb3; Table 1 shows it the paper's way round.
    assert row[f"diff_{pair}"] == pytest.approx(-test["diff"])
    assert (row[f"ci_low_{pair}"], row[f"ci_high_{pair}"]) == pytest.approx((-test["ci_high"], -test["ci_low"]))
    assert (row[f"p_{pair}"], row[f"p_holm_{pair}"]) == pytest.approx((test["p_value"], test["p_holm"]))
    assert row[f"{PAIR}, training-noise t-test: difference [95% CI]"] == (
        f"{-test['diff']:+.3f} [{-test['ci_high']:.3f}, {-test['ci_low']:.3f}]"
    )
    p_texts = ["<0.001" if p < 0.001 else f"{p:.3f}" for p in (test["p_value"], test["p_holm"])]
    assert row[f"{PAIR}, training-noise t-test: p (Holm p)"] == f"{p_texts[0]} ({p_texts[1]})"
    assert (row["paper_vgg19"], row["paper_efficientnetb3"]) == (0.80, 0.96)
    assert (row["Paper VGG-19"], row["Paper EfficientNet-B3"]) == ("0.80", "0.96")
    assert (row[f"paper_ci_low_{pair}"], row[f"paper_ci_high_{pair}"]) == (0.14, 0.18)
    assert (row[f"{PAIR}, paper: p"], row[f"{PAIR}, paper: 95% CI"]) == ("<0.001", "[0.14, 0.18]")
    external = table.loc[("external", "accuracy")]
    assert np.isnan(external["paper_vgg19"]) and external["Paper VGG-19"] == ""
    assert external[f"{PAIR}, paper: 95% CI"] == ""


def test_table1_with_reversed_and_extra_models(per_seed):
    models = ["efficientnetb3", "vgg19", "resnet50"]
    table = _table1(per_seed, models, ["test"]).set_index("metric")
    # The paper's CI turns round with the pair.
    row = table.loc["recall_hem"]
    assert (row["paper_ci_low_vgg19_vs_efficientnetb3"], row["paper_ci_high_vgg19_vs_efficientnetb3"]) == (
        -0.40,
        -0.36,
    )
    assert row["VGG-19 vs EfficientNet-B3, paper: 95% CI"] == "[-0.40, -0.36]"
    assert np.isnan(row["paper_ci_low_resnet50_vs_efficientnetb3"]) and np.isnan(row["paper_resnet50"])
    assert "resnet50 vs EfficientNet-B3, training-noise t-test: p (Holm p)" in table.attrs["markdown_columns"]
    assert not any("vs resnet50" in column for column in table.columns)


def test_table1_caption_names_the_seed_as_unit_and_the_holm_family(tmp_path, per_seed):
    table = _table1(per_seed)
    caption = table.attrs["caption"]
    assert "Each model's mean ± sd is over its 3 seed(s) (the seed the unit: training variance)" in caption
    assert "image called ALL when p_all >= 0.5" in caption
    assert "The training-noise t-test pairs each later model with VGG-19 seed by seed" in caption
    assert (
        "the seed is the independent unit, so it says how much retraining varies on one fixed test set, not whether "
        "the models differ on new patients; Holm over the 9 Table 1 metrics of one subset and model pair"
    ) in caption
    assert "are in table1_extended" in caption
    write_table(table, tmp_path / "t1.tsv", tmp_path / "t1.md", "Table 1")
    lines = (tmp_path / "t1.md").read_text().splitlines()
    assert lines[2] == caption and len(lines) == 6 + len(table)


def test_table1_names_a_missing_subset(per_seed):
    with pytest.raises(UserError, match="vgg19 on val"):
        _table1(per_seed, subsets=["test", "val"])


def test_write_table_writes_tsv_and_markdown(tmp_path, per_seed):
    table = _table1(per_seed)
    write_table(table, tmp_path / "table1.tsv", tmp_path / "table1.md", "Table 1: performance")
    assert read_tsv(tmp_path / "table1.tsv").columns.tolist() == table.columns.tolist()
    lines = (tmp_path / "table1.md").read_text().splitlines()
    assert lines[0] == "## Table 1: performance"
    header, separator, *rows = lines[4:]
    assert header.split(" | ")[:4] == ["| Subset", "Metric", "VGG-19 (mean ± sd)", "Paper VGG-19"]
    assert header.count(" | ") == len(table.attrs["markdown_columns"]) - 1
    assert {cell.strip() for cell in separator.strip("|").split("|")} == {"---"}
    assert len(rows) == len(table)
    assert rows[0].startswith("| test | Overall Accuracy | ")


def _metrics_by_run(metrics_files) -> dict:
    return {key: json.loads(path.read_text()) for key, path in metrics_files.items()}


MIN_SUBJECTS = 5


def _ensemble_metrics(models=MODELS, subsets=SUBSETS, shift=0.0, hem_subjects=5, min_subjects=MIN_SUBJECTS) -> dict:
    """Metrics of each model's mean p_all over the seeds, as the evaluate step scores the ensemble set; the HEM
    images come from ``hem_subjects`` donors."""
    metrics = {}
    for model in models:
        for offset, subset in enumerate(subsets):
            frames = [synthetic_predictions(model, 10 * seed + offset) for seed in SEEDS]
            p_all = np.clip(np.mean([frame["p_all"] for frame in frames], axis=0) + shift, 0, 1)
            donors = pd.Series([f"UID_H{index % hem_subjects}" for index in range(len(p_all))])
            metrics[model, subset] = classification_metrics(
                frames[0]["label"] == "ALL",
                p_all,
                subjects=frames[0]["subject"].where(frames[0]["label"] == "ALL", donors),
                n_bootstrap=50,
                seed=0,
                min_subjects_per_class=min_subjects,
            )
    return metrics


def _as_written(frame: pd.DataFrame, path) -> pd.DataFrame:
    """``frame`` after a round trip through a TSV, as the rule script reads it (empty cells NaN)."""
    write_tsv(frame, path)
    return pd.read_csv(path, sep="\t")


def _comparison_frames(folder, subsets=SUBSETS, sets=("ensemble", "ensemble/tta", "seed1")) -> EnsembleComparisons:
    """subject_comparison.tsv and ensemble_mcnemar.tsv as compare_subjects writes them, with numbers that differ
    per subset, prediction set and metric; a seed's rows that table1_extended must not pick."""
    reference, model = MODELS
    subject_rows, mcnemar_rows = [], []
    for subset_index, subset in enumerate(subsets):
        for set_index, predictions in enumerate(sets):
            key = {"subset": subset, "predictions": predictions, "reference": reference, "model": model}
            for metric_index, metric in enumerate(TABLE1_METRICS):
                difference = 0.2 * subset_index + 0.1 * set_index + 0.01 * metric_index
                subject_rows.append(
                    key
                    | {
                        "metric": metric,
                        "reference_value": 0.7,
                        "model_value": 0.7 + difference,
                        "difference": difference,
                        "ci_low": difference - 0.05,
                        "ci_high": difference + 0.05,
                        "p_value": 0.0004 + 0.01 * metric_index,
                        "p_holm": 0.004 + 0.02 * metric_index,
                        "holm_family": f"9 Table 1 metrics of {subset}, {predictions}, {model} vs {reference}",
                        "n_subjects_all": 5,
                        "n_subjects_hem": 5,
                        "n_bootstrap": 50,
                        "confidence": 0.95,
                        "independent_unit": "subject",
                    }
                )
            mcnemar_rows.append(
                key
                | {
                    "n": 120,
                    "b": 3 + set_index,
                    "c": 9,
                    "statistic": 1.0,
                    "p_value": 0.02 + 0.1 * subset_index + 0.01 * set_index,
                    "method": "exact",
                    "p_holm": 0.08 + 0.1 * subset_index,
                    "independent_unit": "image",
                }
            )
    return EnsembleComparisons(
        subjects=_as_written(pd.DataFrame(subject_rows), folder / "subject_comparison.tsv"),
        mcnemar=_as_written(pd.DataFrame(mcnemar_rows), folder / "ensemble_mcnemar.tsv"),
    )


@pytest.fixture(scope="module")
def comparisons(tmp_path_factory):
    return _comparison_frames(tmp_path_factory.mktemp("stats"))


@pytest.fixture(scope="module")
def prediction_sets(metrics_files):
    seeds = {key: value for key, value in _metrics_by_run(metrics_files).items() if key[0] in MODELS}
    return PredictionSets(seeds=seeds, ensemble=_ensemble_metrics(), subject_ci_subsets=["external"])


@pytest.fixture(scope="module")
def extended(prediction_sets, comparisons):
    return table1_extended(prediction_sets, comparisons, MODELS, SUBSETS)


def _rows(table, predictions):
    return table[table["predictions"] == predictions].set_index(["subset", "metric"])


def test_table1_extended_holds_a_row_per_subset_prediction_set_and_metric_and_a_column_group_per_model(extended):
    kinds = ["ensemble"] * 9 + ["seeds, validation threshold"] * 8
    assert extended["predictions"].tolist() == kinds * 2 and extended["Predictions"].tolist() == kinds * 2
    assert extended["subset"].tolist() == ["test"] * 17 + ["external"] * 17
    assert extended.attrs["markdown_columns"] == [
        "Subset",
        "Metric",
        "Predictions",
        *(f"{name}{part}" for name in ("VGG-19", "EfficientNet-B3") for part in ("", " image CI", " subject CI")),
        f"{PAIR}: difference [subject CI]",
        f"{PAIR}: p (Holm p), subject bootstrap",
        f"{PAIR}: McNemar p (Holm p)",
    ]
    # The machine columns of today's Table 1 rows for the prediction sets, then the comparisons'.
    pair = "efficientnetb3_vs_vgg19"
    per_model = ("mean", "sd", "n_seeds", "ci_low", "ci_high", "subject_ci_low", "subject_ci_high")
    assert extended.columns[12:].tolist() == [
        "subset",
        "metric",
        "predictions",
        *(f"{model}_{name}" for model in MODELS for name in per_model),
        *(f"{name}_{pair}" for name in ("subject_diff", "subject_ci_low", "subject_ci_high", "subject_p")),
        *(f"{name}_{pair}" for name in ("subject_p_holm", "mcnemar_p", "mcnemar_p_holm")),
    ]


def test_table1_extended_ensemble_rows_hold_the_ensemble_value_and_both_intervals(extended, prediction_sets):
    rows = _rows(extended, "ensemble")
    external = prediction_sets.ensemble["efficientnetb3", "external"]["roc_auc"]
    row = rows.loc[("external", "roc_auc")]
    assert row["efficientnetb3_mean"] == external["value"]
    assert (row["efficientnetb3_ci_low"], row["efficientnetb3_ci_high"]) == (external["ci_low"], external["ci_high"])
    assert (row["efficientnetb3_subject_ci_low"], row["efficientnetb3_subject_ci_high"]) == (
        external["subject_ci_low"],
        external["subject_ci_high"],
    )
    assert row["EfficientNet-B3"] == f"{external['value']:.3f}"
    assert row["EfficientNet-B3 image CI"] == f"[{external['ci_low']:.3f}, {external['ci_high']:.3f}]"
    assert row["EfficientNet-B3 subject CI"] == f"[{external['subject_ci_low']:.3f}, {external['subject_ci_high']:.3f}]"
    assert np.isnan(row["efficientnetb3_sd"]) and row["efficientnetb3_n_seeds"] is pd.NA
    # Subject intervals only where subjects are independent of training; the image interval everywhere.
    test = rows.loc[("test", "accuracy")]
    assert test["VGG-19 subject CI"] == "" and np.isnan(test["vgg19_subject_ci_low"])
    assert test["vgg19_ci_low"] == prediction_sets.ensemble["vgg19", "test"]["accuracy"]["ci_low"]


def test_table1_extended_compares_the_ensembles_by_subjects_and_by_mcnemar(extended, comparisons):
    rows = _rows(extended, "ensemble")
    pair = "efficientnetb3_vs_vgg19"
    subjects = comparisons.subjects.set_index(["subset", "predictions", "metric"])
    expected = subjects.loc[("external", "ensemble", "f1_hem")]
    row = rows.loc[("external", "f1_hem")]
    assert (row[f"subject_diff_{pair}"], row[f"subject_ci_low_{pair}"], row[f"subject_ci_high_{pair}"]) == (
        pytest.approx((expected["difference"], expected["ci_low"], expected["ci_high"]))
    )
    assert (row[f"subject_p_{pair}"], row[f"subject_p_holm_{pair}"]) == (expected["p_value"], expected["p_holm"])
    assert row[f"{PAIR}: difference [subject CI]"] == (
        f"{expected['difference']:+.3f} [{expected['ci_low']:.3f}, {expected['ci_high']:.3f}]"
    )
    assert row[f"{PAIR}: p (Holm p), subject bootstrap"] == f"{expected['p_value']:.3f} ({expected['p_holm']:.3f})"
    assert rows.loc[("external", "accuracy"), f"{PAIR}: p (Holm p), subject bootstrap"] == "<0.001 (0.004)"
    # McNemar compares the calls' correctness: on the accuracy row only, on every subset.
    mcnemar = comparisons.mcnemar.set_index(["subset", "predictions"])
    for subset in SUBSETS:
        accuracy = rows.loc[(subset, "accuracy")]
        expected = mcnemar.loc[(subset, "ensemble")]
        assert (accuracy[f"mcnemar_p_{pair}"], accuracy[f"mcnemar_p_holm_{pair}"]) == (
            expected["p_value"],
            expected["p_holm"],
        )
        assert accuracy[f"{PAIR}: McNemar p (Holm p)"] == f"{expected['p_value']:.3f} ({expected['p_holm']:.3f})"
        assert rows.loc[(subset, "roc_auc"), f"{PAIR}: McNemar p (Holm p)"] == ""
    # No subject comparison where subjects are not independent of training, and none beside the seeds.
    assert rows.loc[("test", "accuracy"), f"{PAIR}: difference [subject CI]"] == ""
    assert np.isnan(rows.loc[("test", "accuracy"), f"subject_diff_{pair}"])
    seeds = _rows(extended, "seeds, validation threshold")
    assert (seeds[f"{PAIR}: difference [subject CI]"] == "").all() and seeds[f"mcnemar_p_{pair}"].isna().all()


def test_table1_extended_says_why_a_subject_interval_is_null(prediction_sets, comparisons, tmp_path):
    two_donors = _ensemble_metrics(subsets=["test"], hem_subjects=2)
    assert two_donors["vgg19", "test"]["subject_support"] == {"ALL": 5, "HEM": 2}
    subjects = comparisons.subjects.copy()
    few = subjects["subset"] == "test"
    subjects.loc[few, ["ci_low", "ci_high", "p_value", "p_holm"]] = np.nan
    subjects.loc[few, ["n_subjects_all", "n_subjects_hem"]] = (5, 2)
    sets = PredictionSets(
        seeds=prediction_sets.seeds,
        ensemble=prediction_sets.ensemble | two_donors,
        subject_ci_subsets=["test", "external"],
    )
    stats = EnsembleComparisons(
        subjects=_as_written(subjects, tmp_path / "subject_comparison.tsv"), mcnemar=comparisons.mcnemar
    )
    rows = _rows(table1_extended(sets, stats, MODELS, SUBSETS), "ensemble")
    row = rows.loc[("test", "recall_hem")]
    reason = "n/a (2 HEM subjects, fewer than 5)"
    assert row["VGG-19 subject CI"] == reason and np.isnan(row["vgg19_subject_ci_low"])
    assert row["VGG-19 image CI"].startswith("[")
    difference = subjects.set_index(["subset", "predictions", "metric"]).loc[("test", "ensemble", "recall_hem")]
    assert row[f"{PAIR}: difference [subject CI]"] == f"{difference['difference']:+.3f}, CI {reason}"
    assert row[f"{PAIR}: p (Holm p), subject bootstrap"] == reason
    assert rows.loc[("external", "recall_hem"), "VGG-19 subject CI"].startswith("[")
    # Both classes short: both named.
    sets = PredictionSets(
        seeds=prediction_sets.seeds,
        ensemble=prediction_sets.ensemble | _ensemble_metrics(subsets=["test"], min_subjects=6),
        subject_ci_subsets=["test"],
    )
    row = _rows(table1_extended(sets, comparisons, MODELS, ["test"]), "ensemble").loc[("test", "accuracy")]
    assert row["VGG-19 subject CI"] == "n/a (5 ALL and 5 HEM subjects, fewer than 6)"


def test_table1_extended_validation_threshold_rows_average_each_seeds_rescored_metrics(metrics_files, extended):
    rows = _rows(extended, "seeds, validation threshold")
    assert "roc_auc" not in rows.loc["test"].index
    runs = _metrics_by_run(metrics_files)
    values = [runs["vgg19", seed, "test"]["at_validation_threshold"]["recall_hem"]["value"] for seed in SEEDS]
    row = rows.loc[("test", "recall_hem")]
    assert row["vgg19_mean"] == pytest.approx(np.mean(values))
    assert row["vgg19_sd"] == pytest.approx(np.std(values, ddof=1))
    assert row["vgg19_n_seeds"] == 3
    assert row["VGG-19"] == f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
    assert row["VGG-19 image CI"] == "" and row["VGG-19 subject CI"] == ""


def test_table1_extended_adds_tta_rows_compared_on_the_tta_ensembles(
    metrics_files, per_seed, prediction_sets, comparisons
):
    runs = {key: value for key, value in _metrics_by_run(metrics_files).items() if key[0] in MODELS}
    sets = PredictionSets(
        seeds=prediction_sets.seeds,
        ensemble=prediction_sets.ensemble,
        tta_seeds=runs,
        tta_ensemble=_ensemble_metrics(shift=0.05),
        subject_ci_subsets=["test", "external"],
    )
    table = table1_extended(sets, comparisons, MODELS, ["external"])
    counts = table["predictions"].value_counts(sort=False).to_dict()
    assert counts == {"ensemble": 9, "seeds, validation threshold": 8, "TTA seeds": 9, "TTA ensemble": 9}
    row = _rows(table, "TTA ensemble").loc[("external", "accuracy")]
    assert row["vgg19_mean"] == sets.tta_ensemble["vgg19", "external"]["accuracy"]["value"]
    assert row["vgg19_subject_ci_low"] == sets.tta_ensemble["vgg19", "external"]["accuracy"]["subject_ci_low"]
    tta = comparisons.subjects.set_index(["subset", "predictions", "metric"]).loc[
        ("external", "ensemble/tta", "accuracy")
    ]
    assert row["subject_diff_efficientnetb3_vs_vgg19"] == pytest.approx(tta["difference"])
    mcnemar = comparisons.mcnemar.set_index(["subset", "predictions"]).loc[("external", "ensemble/tta")]
    assert row["mcnemar_p_efficientnetb3_vs_vgg19"] == mcnemar["p_value"]
    tta_seeds = _rows(table, "TTA seeds").loc[("external", "f1_all")]
    assert tta_seeds["vgg19_mean"] == pytest.approx(seed_values(per_seed, "external", "f1_all", "vgg19").mean())


def test_table1_extended_caption_names_each_unit_confidence_and_holm_family(tmp_path, extended):
    caption = extended.attrs["caption"]
    assert "mean p_all over its 3 seed(s)" in caption
    assert "mean ± sd over seeds (the seed the unit: training variance)" in caption
    assert (
        "Image CI: 95% percentile bootstrap interval resampling images within their class (the image the unit"
        in caption
    )
    assert (
        "(the subject the unit), shown for external (subjects unseen in training) and n/a below 5 subjects" in caption
    )
    assert (
        "paired 95% subject bootstrap, both models scored on the same resampled subjects (the subject the unit); Holm "
        "over the 9 Table 1 metrics of one subset, prediction set and model pair."
    ) in caption
    assert "McNemar's test of the two ensembles' calls on the same images (the image the unit)" in caption
    assert "Holm over the 2 subsets of one ensemble and model pair" in caption
    assert "p_all >= 0.5;" in caption
    # The seeds' validation thresholds, 0.4 + 0.05 * seed.
    assert "val predictions (0.45 to 0.55)" in caption
    write_table(extended, tmp_path / "t1x.tsv", tmp_path / "t1x.md", "Table 1, extended")
    lines = (tmp_path / "t1x.md").read_text().splitlines()
    assert lines[2] == caption and len(lines) == 6 + len(extended)
    assert lines[6].startswith("| test | Overall Accuracy | ensemble | ")
    assert read_tsv(tmp_path / "t1x.tsv")["vgg19_n_seeds"].tolist()[:2] == ["", ""]


def test_table1_extended_names_missing_or_outdated_inputs(prediction_sets, comparisons):
    partial = {key: value for key, value in prediction_sets.ensemble.items() if key != ("vgg19", "external")}
    sets = PredictionSets(seeds=prediction_sets.seeds, ensemble=partial, subject_ci_subsets=["external"])
    with pytest.raises(UserError, match="No ensemble metrics for vgg19 on external"):
        table1_extended(sets, comparisons, MODELS, SUBSETS)
    outdated = {key: dict(value) for key, value in prediction_sets.seeds.items()}
    del outdated["efficientnetb3", 2, "test"]["at_validation_threshold"]
    sets = PredictionSets(seeds=outdated, ensemble=prediction_sets.ensemble)
    with pytest.raises(
        UserError, match="of efficientnetb3 seed 2 on test has no value for 'accuracy' under 'at_validation_threshold'"
    ):
        table1_extended(sets, comparisons, MODELS, SUBSETS)
    no_minimum = {key: dict(value) for key, value in prediction_sets.ensemble.items()}
    del no_minimum["efficientnetb3", "external"]["min_subjects_per_class"]
    sets = PredictionSets(seeds=prediction_sets.seeds, ensemble=no_minimum, subject_ci_subsets=["external"])
    with pytest.raises(UserError, match="ensemble of efficientnetb3 on external lack 'min_subjects_per_class'"):
        table1_extended(sets, comparisons, MODELS, SUBSETS)
    without_external = EnsembleComparisons(
        subjects=comparisons.subjects[comparisons.subjects["subset"] != "external"], mcnemar=comparisons.mcnemar
    )
    with pytest.raises(UserError, match="subject-level comparisons have no row for metric accuracy, subset external"):
        table1_extended(prediction_sets, without_external, MODELS, SUBSETS)
    without_test = EnsembleComparisons(
        subjects=comparisons.subjects, mcnemar=comparisons.mcnemar[comparisons.mcnemar["subset"] != "test"]
    )
    with pytest.raises(UserError, match="McNemar tests have no row for subset test, predictions ensemble"):
        table1_extended(prediction_sets, without_test, MODELS, SUBSETS)
