"""The C-NMC 2019 yardstick: published results beside ours."""

import logging
import math

import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.evaluate.challenge import (
    FINAL_PHASE,
    PRELIM_PHASE,
    PUBLISHED_RESULTS,
    challenge_table,
    image_count_warning,
)
from leukemia_dtl.evaluate.formatting import write_table
from leukemia_dtl.evaluate.result_files import write_metrics


def test_published_results_are_the_issues_values_as_fractions():
    values = {
        (result.entry.split(" (")[0], result.phase): {
            metric: result.value(metric) for metric in ("weighted_f1", "balanced_accuracy", "roc_auc")
        }
        for result in PUBLISHED_RESULTS
    }
    assert values["Pan et al. 2019", PRELIM_PHASE] == pytest.approx(
        {"weighted_f1": 0.9250, "balanced_accuracy": 0.9173, "roc_auc": math.nan}, nan_ok=True
    )
    assert values["Mondal et al. 2021", PRELIM_PHASE] == pytest.approx(
        {"weighted_f1": 0.897, "balanced_accuracy": 0.883, "roc_auc": 0.948}
    )
    assert values["Pan et al. 2019", FINAL_PHASE]["weighted_f1"] == pytest.approx(0.9104)
    assert values["Prellberg & Kramer 2019", FINAL_PHASE]["weighted_f1"] == pytest.approx(0.8891)
    assert all(result.source for result in PUBLISHED_RESULTS)


def _metrics(value: float, subject_ci: bool = False, support: tuple[int, int] = (1219, 648)) -> dict:
    """A metrics file with every challenge metric at ``value`` and its interval 0.05 either side, scored on
    ``support`` (ALL, HEM) images: by default the challenge's prelim-phase test set."""
    entry = {"value": value, "ci_low": value - 0.05, "ci_high": value + 0.05}
    if subject_ci:
        entry |= {"subject_ci_low": value - 0.1, "subject_ci_high": value + 0.1}
    metrics = dict.fromkeys(("weighted_f1", "balanced_accuracy", "roc_auc"), entry)
    return metrics | {"threshold": 0.4, "confidence": 0.95, "support": {"ALL": support[0], "HEM": support[1]}}


@pytest.fixture
def metrics_files(tmp_path):
    """vgg19 seeds 1 and 2 (0.80, 0.90) and ensemble (0.88), each plain and TTA (+0.02);
    efficientnetb3 plain only (0.70, 0.74; ensemble 0.75)."""
    seeds, ensembles = {}, {}
    for model, kinds, seed_values, ensemble_value in (
        ("vgg19", ("plain", "tta"), (0.80, 0.90), 0.88),
        ("efficientnetb3", ("plain",), (0.70, 0.74), 0.75),
    ):
        for kind in kinds:
            shift = 0.02 if kind == "tta" else 0.0
            for seed, value in zip((1, 2), seed_values, strict=True):
                seeds[model, kind, seed] = tmp_path / f"{model}_{kind}_{seed}.json"
                write_metrics(_metrics(value + shift), seeds[model, kind, seed])
            ensembles[model, kind] = tmp_path / f"{model}_{kind}_ensemble.json"
            write_metrics(_metrics(ensemble_value + shift), ensembles[model, kind])
    return seeds, ensembles


def test_the_table_sets_seeds_ensembles_and_tta_beside_the_published_results(metrics_files, tmp_path):
    seeds, ensembles = metrics_files
    table = challenge_table(seeds, ensembles, ["vgg19", "efficientnetb3"], data_source="kaggle")
    ours = table[table["aggregate"] != "published"]
    assert ours[["model", "kind", "aggregate"]].values.tolist() == [
        ["vgg19", "plain", "seeds"],
        ["vgg19", "plain", "ensemble"],
        ["vgg19", "tta", "seeds"],
        ["vgg19", "tta", "ensemble"],
        ["efficientnetb3", "plain", "seeds"],
        ["efficientnetb3", "plain", "ensemble"],
    ]
    vgg_seeds = ours.iloc[0]
    assert vgg_seeds["weighted_f1"] == pytest.approx(0.85)
    assert vgg_seeds["weighted_f1_sd"] == pytest.approx(np.std([0.80, 0.90], ddof=1))
    assert vgg_seeds["Weighted F1 (%)"] == "85.00 ± 7.07"
    assert vgg_seeds["ROC-AUC"] == "0.850 ± 0.071"
    assert vgg_seeds["Entry"] == "VGG-19, single seeds (n = 2)"
    vgg_tta_ensemble = ours.iloc[3]
    assert vgg_tta_ensemble["Balanced accuracy (%)"] == "90.00 [85.00, 95.00]"
    assert vgg_tta_ensemble["roc_auc_ci_low"] == pytest.approx(0.85)
    assert "TTA" in vgg_tta_ensemble["Entry"]

    published = table[table["aggregate"] == "published"]
    assert published["phase"].tolist() == [PRELIM_PHASE, PRELIM_PHASE, FINAL_PHASE, FINAL_PHASE]
    assert published["Weighted F1 (%)"].tolist() == ["92.50", "89.7", "91.04", "88.91"]
    assert published["ROC-AUC"].tolist() == ["", "0.948", "", ""]
    assert (ours["Phase"] == "prelim (our external subset)").all()

    write_table(table, tmp_path / "challenge.tsv", tmp_path / "challenge.md", "Challenge")
    markdown = (tmp_path / "challenge.md").read_text()
    assert "Prelim phase = this project's external subset" in markdown
    assert "p_all >= 0.4 (the configured threshold)" in markdown
    assert "resampling images" in markdown
    assert "| Entry | Phase | Images | Weighted F1 (%) | Balanced accuracy (%) | ROC-AUC | Source |" in markdown
    assert read_tsv(tmp_path / "challenge.tsv")["aggregate"].tolist() == table["aggregate"].tolist()


def test_ensembles_show_subject_intervals_when_their_metrics_have_them(tmp_path):
    seeds = {("vgg19", "plain", 1): tmp_path / "seed.json"}
    ensembles = {("vgg19", "plain"): tmp_path / "ensemble.json"}
    write_metrics(_metrics(0.8), seeds["vgg19", "plain", 1])
    write_metrics(_metrics(0.8, subject_ci=True), ensembles["vgg19", "plain"])
    table = challenge_table(seeds, ensembles, ["vgg19"], data_source="kaggle")
    assert table.loc[1, "Weighted F1 (%)"] == "80.00 [70.00, 90.00]"
    assert "resampling subjects" in table.attrs["caption"]


def test_a_model_without_seed_metrics_or_a_metric_is_a_user_error(metrics_files, tmp_path):
    seeds, ensembles = metrics_files
    with pytest.raises(UserError, match="No external-subset metrics of resnet's seeds"):
        challenge_table(seeds, ensembles, ["vgg19", "resnet"], data_source="kaggle")
    incomplete = _metrics(0.8)
    del incomplete["balanced_accuracy"]
    write_metrics(incomplete, seeds["vgg19", "plain", 2])
    with pytest.raises(UserError, match=r"vgg19_plain_2\.json has no value for 'balanced_accuracy'"):
        challenge_table(seeds, ensembles, ["vgg19"], data_source="kaggle")


def test_every_row_counts_the_images_it_was_scored_on(metrics_files, caplog):
    seeds, ensembles = metrics_files
    with caplog.at_level(logging.WARNING):
        table = challenge_table(seeds, ensembles, ["vgg19", "efficientnetb3"], data_source="kaggle")
    published = table["aggregate"] == "published"
    assert (table.loc[~published, "n_images"] == 1867).all()
    assert table.loc[published, "n_images"].tolist() == [1867, 1867, 2586, 2586]
    assert table.loc[published, "Images"].tolist() == ["1,867", "1,867", "2,586", "2,586"]
    assert "Warning" not in table.attrs["caption"] and not caplog.records


def test_the_caption_names_the_caveats_and_the_cited_versions(metrics_files):
    seeds, ensembles = metrics_files
    caption = challenge_table(seeds, ensembles, ["vgg19"], data_source="kaggle").attrs["caption"]
    assert "all 10,661 labelled training images" in caption and "about 70 %" in caption
    assert "leaderboard entries could be resubmitted" in caption
    assert "Informatics in Medicine Unlocked 27:100794 (journal version; its preprint's 88.6 / 86.2 / 0.941" in caption
    assert caption.count("Pan et al. 2019,") == 1 and "Prellberg & Kramer 2019" in caption and "1906.09020" in caption
    mondal = [result for result in PUBLISHED_RESULTS if result.entry.startswith("Mondal")]
    assert [result.citation for result in mondal] == [
        "Mondal et al. 2021, Informatics in Medicine Unlocked 27:100794 "
        "(journal version; its preprint's 88.6 / 86.2 / 0.941 are not used)"
    ]


@pytest.mark.parametrize(
    ("data_source", "warns"), [("kaggle", True), ("archive", True), ("directory", True), ("demo", False)]
)
def test_a_real_external_subset_of_another_size_than_the_challenges_is_a_warning(tmp_path, caplog, data_source, warns):
    seeds = {("vgg19", "plain", 1): tmp_path / "seed.json"}
    ensembles = {("vgg19", "plain"): tmp_path / "ensemble.json"}
    for path in (*seeds.values(), *ensembles.values()):
        write_metrics(_metrics(0.8, support=(1219, 641)), path)
    with caplog.at_level(logging.WARNING):
        table = challenge_table(seeds, ensembles, ["vgg19"], data_source=data_source)
    assert table.loc[0, "n_images"] == 1860 and table.loc[0, "Images"] == "1,860"
    warning = "Warning: our external subset has 1,860 images, not the challenge's 1,867 prelim-phase test images"
    assert table.attrs["caption"].startswith(warning) == warns
    assert [record.getMessage()[: len(warning)] for record in caplog.records] == ([warning] if warns else [])


def test_image_count_warning_names_every_size_found():
    assert "1,860 / 1,867 images" in image_count_warning([1867, 1860, 1867], "directory")
    assert image_count_warning([1867, 1867], "archive") == ""


def test_seeds_scored_on_different_numbers_of_images_are_a_user_error(tmp_path):
    seeds = {("vgg19", "plain", seed): tmp_path / f"seed{seed}.json" for seed in (1, 2)}
    write_metrics(_metrics(0.8), seeds["vgg19", "plain", 1])
    write_metrics(_metrics(0.8, support=(1219, 600)), seeds["vgg19", "plain", 2])
    with pytest.raises(UserError, match="different numbers of external images"):
        challenge_table(seeds, {}, ["vgg19"], data_source="kaggle")
