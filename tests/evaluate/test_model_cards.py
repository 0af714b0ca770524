import copy
import json
import re

import numpy as np
import pandas as pd
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.format_versions import TRAIN_STATS_FORMAT_VERSION
from leukemia_dtl.evaluate.calibration import brier_score, expected_calibration_error
from leukemia_dtl.evaluate.formatting import mean_sd, mean_sd_text
from leukemia_dtl.evaluate.model_cards import few_subjects, model_card, write_model_card
from leukemia_dtl.evaluate.result_files import is_all, write_metrics
from rule_scripts import run_rule_script

SEEDS = [0, 1]
SUBSETS = ("test", "external")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONFIG_BLOCK = {
    "batch_size": 16,
    "epochs": 5,
    "optimizer": "adamax",
    "learning_rate": 0.001,
    "dropout": 0.5,
    "freeze_base": True,
    "weights": "none",
    "normalization": "model",
}
# (subject, label, subset, images). Random split: test subjects A1 and H1 also have train images, A3 and H3 do not.
SPLIT_SUBJECTS = [
    ("A1", "ALL", "train", 3),
    ("A2", "ALL", "train", 2),
    ("H1", "HEM", "train", 2),
    ("H2", "HEM", "train", 2),
    ("A1", "ALL", "val", 1),
    ("H1", "HEM", "val", 1),
    ("A1", "ALL", "test", 2),
    ("A3", "ALL", "test", 2),
    ("H1", "HEM", "test", 1),
    ("H3", "HEM", "test", 1),
    ("E1", "ALL", "external", 2),
    ("E2", "HEM", "external", 2),
]
# Per seed, the single model's ROC-AUC on test and external; the ensemble's with its intervals (the test subject
# interval null, as for a class with a single subject).
SEED_ROC_AUC = {"test": [0.70, 0.80], "external": [0.55, 0.65]}
ENSEMBLE_ROC_AUC = {
    "test": {"value": 0.78, "ci_low": 0.70, "ci_high": 0.85, "subject_ci_low": None, "subject_ci_high": None},
    "external": {"value": 0.62, "ci_low": 0.50, "ci_high": 0.75, "subject_ci_low": 0.60, "subject_ci_high": 0.90},
}
OTHER_METRICS = ("balanced_accuracy", "accuracy", "weighted_f1", "recall_all", "specificity")


def split_table(subjects=SPLIT_SUBJECTS) -> pd.DataFrame:
    rows = [
        {"path": f"{subset}/{subject}_{image}.bmp", "subject": subject, "label": label, "subset": subset}
        for subject, label, subset, images in subjects
        for image in range(images)
    ]
    return pd.DataFrame(rows)


def _entry(value: float) -> dict:
    return {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.1, "subject_ci_low": 0.0, "subject_ci_high": 1}


def _metrics(roc_auc: dict, other: float) -> dict:
    # recall_all apart from the others, so that reading sensitivity from another metric shows.
    entries = {metric: _entry(other + (0.2 if metric == "recall_all" else 0.0)) for metric in OTHER_METRICS}
    return {"roc_auc": roc_auc, **entries, "confidence": 0.95, "threshold": 0.5}


def _predictions(split: pd.DataFrame, subset: str, shift: float) -> pd.DataFrame:
    part = split[split["subset"] == subset].reset_index(drop=True)
    # Spread over several calibration bins, higher for ALL, so ECE and Brier are neither 0 nor trivial.
    p_all = np.clip(np.linspace(0.15, 0.85, len(part)) + np.where(part["label"] == "ALL", 0.1, -0.05) + shift, 0, 1)
    return part[["path", "subject", "label"]].assign(p_all=p_all, pred=np.where(p_all >= 0.5, "ALL", "HEM"))


def card_inputs(split: pd.DataFrame | None = None) -> dict:
    """model_card's arguments for vgg19 on the random split, tuned: both seeds trained with learning rate 0.01."""
    split = split_table() if split is None else split
    train_stats = [
        {
            "format_version": TRAIN_STATS_FORMAT_VERSION,
            "model_options": CONFIG_BLOCK | {"learning_rate": 0.01},
            "epochs_run": 5,
            "training_seconds": 90.0,
            "device": "CPU: test (2 cores usable)",
            "keras_backend": "tensorflow",
            "precision": "float32",
            "image_size": 32,
        }
        for _ in SEEDS
    ]
    provenance = [
        {
            "git": {"commit": COMMIT, "modified": seed == 1, "error": None},
            "config_digest": "sha256:" + f"{seed}" * 64,
            "archive_sha256": "ab" * 32,
        }
        for seed in SEEDS
    ]
    seed_predictions = {subset: [_predictions(split, subset, shift) for shift in (-0.05, 0.05)] for subset in SUBSETS}
    return {
        "scheme": "random",
        "model": "vgg19",
        "seeds": SEEDS,
        "split": split,
        "train_stats": train_stats,
        "provenance": provenance,
        "seed_metrics": {
            subset: [_metrics(_entry(value), 0.6 + 0.1 * seed) for seed, value in enumerate(SEED_ROC_AUC[subset])]
            for subset in SUBSETS
        },
        "seed_predictions": seed_predictions,
        "ensemble_metrics": {subset: _metrics(ENSEMBLE_ROC_AUC[subset], 0.66) for subset in SUBSETS},
        "ensemble_predictions": {subset: _predictions(split, subset, 0.0) for subset in SUBSETS},
        "model_files": [f"results/models/random/vgg19/seed{seed}/model.keras" for seed in SEEDS],
        "export_folders": [f"results/export/random/vgg19/seed{seed}" for seed in SEEDS],
        "model_options": CONFIG_BLOCK,
        "hyperparameters": "tuned",
        "augmentation": {"horizontal_flip": True, "rotation_degrees": 15, "shift": 0.1, "zoom": 0.1},
        "image_size": 32,
        "precision": "float32",
        "min_subjects_per_class": 5,
    }


def section(card: str, heading: str) -> str:
    """The text of ``## heading`` up to the next level-2 heading."""
    return card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(card: str, heading: str) -> list[dict[str, str]]:
    """The Markdown table of a section as one dict per row."""
    lines = [line for line in section(card, heading).splitlines() if line.startswith("|")]
    header, *body = ([cell.strip() for cell in line.strip("|").split(" | ")] for line in lines)
    return [dict(zip(header, row, strict=True)) for row in body[1:]]


def row_of(rows: list[dict], **match) -> dict:
    (found,) = [row for row in rows if all(row[key] == value for key, value in match.items())]
    return found


def test_sections_in_order_and_research_use_only():
    card = model_card(**card_inputs())
    headings = re.findall(r"^##? (.+)$", card, re.MULTILINE)
    assert headings == [
        "Model card: VGG-19, random split",
        "Intended use",
        "Data and split",
        "Training configuration",
        "Metrics on held-out data",
        "Calibration",
        "Known limitations",
        "Files",
    ]
    assert "**Not for diagnosis**" in section(card, "Intended use")


def test_images_and_subjects_per_class_from_the_split():
    rows = table_rows(model_card(**card_inputs()), "Data and split")
    assert [row["Subset"] for row in rows] == ["train", "val", "test", "external"]
    test = row_of(rows, Subset="test")
    assert (test["ALL images"], test["ALL subjects"], test["HEM images"], test["HEM subjects"]) == ("4", "2", "2", "2")
    assert row_of(rows, Subset="train")["ALL images"] == "5"


def test_metrics_seeds_mean_sd_and_the_ensemble_with_its_intervals():
    rows = table_rows(model_card(**card_inputs()), "Metrics on held-out data")
    assert len(rows) == 2 * 6
    test_auc = row_of(rows, Subset="test", Metric="ROC-AUC")
    assert test_auc["Single seeds, mean ± sd"] == mean_sd_text(0.75, np.std([0.7, 0.8], ddof=1), 3) == "0.750 ± 0.071"
    assert (test_auc["Seeds"], test_auc["Seed ensemble"]) == ("2", "0.780")
    assert test_auc["Image-level 95% CI"] == "[0.700, 0.850]"
    assert test_auc["Subject-level 95% CI"] == "n/a"
    external_auc = row_of(rows, Subset="external", Metric="ROC-AUC")
    assert (external_auc["Single seeds, mean ± sd"], external_auc["Subject-level 95% CI"]) == (
        "0.600 ± 0.071",
        "[0.600, 0.900]",
    )
    # Sensitivity is recall_all (0.2 above the other metrics): seeds 0.8 and 0.9, ensemble 0.86.
    sensitivity = row_of(rows, Subset="test", Metric="Sensitivity (ALL recall)")
    assert (sensitivity["Single seeds, mean ± sd"], sensitivity["Seed ensemble"]) == ("0.850 ± 0.071", "0.860")


def test_calibration_is_calibration_modules_on_the_same_predictions():
    inputs = card_inputs()
    rows = table_rows(model_card(**inputs), "Calibration")
    assert len(rows) == 4
    for subset in SUBSETS:
        for label, measure in (
            ("ECE (10 bins)", lambda frame: expected_calibration_error(is_all(frame), frame["p_all"])),
            ("Brier score", lambda frame: brier_score(is_all(frame), frame["p_all"])),
        ):
            row = row_of(rows, Subset=subset, Measure=label)
            mean, sd, _ = mean_sd([measure(frame) for frame in inputs["seed_predictions"][subset]])
            assert row["Single seeds, mean ± sd"] == mean_sd_text(mean, sd, 3)
            assert row["Seed ensemble"] == f"{measure(inputs['ensemble_predictions'][subset]):.3f}"
            assert measure(inputs["ensemble_predictions"][subset]) > 0


def test_random_split_states_the_leak_it_counts():
    limitations = section(model_card(**card_inputs()), "Known limitations")
    assert "**Image-level leakage (random split)**: 2 of the 4 test subjects (3 of the 6 test images)" in limitations


def test_patient_split_has_no_leakage_warning():
    disjoint = [row for row in SPLIT_SUBJECTS if not (row[2] == "test" and row[0] in {"A1", "H1"})]
    card = model_card(**card_inputs(split_table(disjoint)) | {"scheme": "patient"})
    limitations = section(card, "Known limitations")
    assert "leakage" not in card.lower()
    assert "Subject-disjoint split: 0 of the 2 test subjects (0 of the 3 test images)" in limitations


def test_a_random_base_is_flagged_before_anything_else():
    card = model_card(**card_inputs())
    assert card.index("> **Warning: random base.**") < card.index("## Intended use")
    assert "**Random base** (`weights: none`)" in section(card, "Known limitations")
    pretrained = model_card(**card_inputs() | {"model_options": CONFIG_BLOCK | {"weights": "imagenet"}})
    assert "random base" not in pretrained.lower()


def test_tuned_values_shown_beside_the_config():
    card = model_card(**card_inputs())
    configuration = section(card, "Training configuration")
    assert "Hyperparameters: tuned" in configuration
    assert "learning_rate 0.01 (config: 0.001)" in configuration
    assert "dropout" not in configuration.split("Hyperparameters: tuned")[1].split(".")[0]
    rows = table_rows(card, "Training configuration")
    assert [row["learning_rate"] for row in rows] == ["0.01", "0.01"]
    assert (rows[0]["fine_tune"], rows[0]["class_weight"], rows[0]["Training time"]) == ("off", "none", "1.5 min")
    # hyperparameters: config (config/schema.yaml allows config and tuned): the models block, no tuned values.
    configured = section(model_card(**card_inputs() | {"hyperparameters": "config"}), "Training configuration")
    assert "Hyperparameters: configured (the config's models block)" in configured
    assert "Hyperparameters: tuned" not in configured and "(config: " not in configured


def test_classes_with_few_subjects_are_flagged_at_the_configured_minimum():
    card = model_card(**card_inputs())
    limitations = section(card, "Known limitations")
    assert "Fewer than 5 subjects of a class in test (2 ALL, 2 HEM), external (1 ALL, 1 HEM)" in limitations
    assert "no subject-level interval there" in limitations
    assert "n/a where a class has fewer than 5 subjects" in section(card, "Metrics on held-out data")
    many = [(f"{label}{n}", label, subset, 1) for subset in SUBSETS for label in ("ALL", "HEM") for n in range(5)]
    assert few_subjects(split_table(many), 5) == {}
    assert few_subjects(split_table(many[:-1]), 5) == {"external": {"HEM": 4}}
    assert few_subjects(split_table(many), 6) == {"test": {"ALL": 5, "HEM": 5}, "external": {"ALL": 5, "HEM": 5}}
    lenient = model_card(**card_inputs() | {"min_subjects_per_class": 2})
    assert "Fewer than 2 subjects of a class in external (1 ALL, 1 HEM)" in section(lenient, "Known limitations")


def test_files_per_seed_with_their_provenance():
    rows = table_rows(model_card(**card_inputs()), "Files")
    assert [row["Seed"] for row in rows] == ["0", "1"]
    assert rows[1]["Model file"] == "`results/models/random/vgg19/seed1/model.keras`"
    assert rows[1]["Export folder"] == "`results/export/random/vgg19/seed1`"
    assert [row["Git commit"] for row in rows] == ["0123456", "0123456 (modified)"]
    assert [row["Config digest"] for row in rows] == ["0" * 12, "1" * 12]
    assert rows[0]["Archive sha256"] == "ab" * 6


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _write_metrics(path, metrics):
    write_metrics(metrics, path)
    return path


@pytest.fixture
def card_files(tmp_path):
    """card_inputs() on disk, as the rule hands them to write_model_card, and the in-memory inputs."""
    inputs = card_inputs()
    split_path = tmp_path / "split.tsv"
    inputs["split"].to_csv(split_path, sep="\t", index=False)

    def tsv(frame, name):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp_path / name, sep="\t", index=False)
        return tmp_path / name

    # The workflow's paths: the rule script keys each per-seed file by the seed its path names.
    run = "random/vgg19/seed{seed}"

    paths = {
        "split_path": split_path,
        "train_stats_paths": [
            _write_json(
                tmp_path / f"results/models/{run.format(seed=seed)}/train_stats.json", inputs["train_stats"][seed]
            )
            for seed in SEEDS
        ],
        "provenance_paths": [
            _write_json(
                tmp_path / f"results/models/{run.format(seed=seed)}/provenance.json",
                inputs["provenance"][seed]
                | {"packages": {}, "device": "cpu", "keras_backend": "tensorflow", "slurm": {}},
            )
            for seed in SEEDS
        ],
        "metrics_paths": {
            subset: [
                _write_metrics(
                    tmp_path / f"results/metrics/{run.format(seed=seed)}/{subset}.json",
                    inputs["seed_metrics"][subset][seed],
                )
                for seed in SEEDS
            ]
            for subset in SUBSETS
        },
        "prediction_paths": {
            subset: [
                tsv(
                    inputs["seed_predictions"][subset][seed],
                    f"results/predictions/{run.format(seed=seed)}/{subset}.tsv",
                )
                for seed in SEEDS
            ]
            for subset in SUBSETS
        },
        "ensemble_metrics_paths": {
            subset: _write_metrics(tmp_path / f"{subset}_ensemble.json", inputs["ensemble_metrics"][subset])
            for subset in SUBSETS
        },
        "ensemble_prediction_paths": {
            subset: tsv(inputs["ensemble_predictions"][subset], f"{subset}_ensemble.tsv") for subset in SUBSETS
        },
    }
    return paths, inputs


def _settings(inputs: dict) -> dict:
    names = ("scheme", "model", "model_files", "export_folders", "model_options", "hyperparameters")
    names += ("augmentation", "image_size", "precision", "min_subjects_per_class")
    return {name: inputs[name] for name in names}


def test_write_model_card_reads_the_files(tmp_path, card_files):
    paths, inputs = card_files
    card_path = tmp_path / "model_cards" / "random" / "vgg19.md"
    write_model_card(card_path, **paths, seeds=SEEDS, **_settings(inputs))
    written = card_path.read_text()
    assert written == model_card(**inputs)
    assert written.startswith("# Model card: VGG-19, random split\n")


def test_the_rule_script_passes_every_setting_on(tmp_path, card_files):
    paths, inputs = card_files
    card_path = tmp_path / "card.md"
    run_rule_script(
        "model_card.py",
        input={
            "split": str(paths["split_path"]),
            "train_stats": [str(path) for path in paths["train_stats_paths"]],
            # In another order than the training stats: the script keys each file by the seed of its path.
            "provenance": [str(path) for path in reversed(paths["provenance_paths"])],
            **{f"{subset}_metrics": [str(path) for path in paths["metrics_paths"][subset]] for subset in SUBSETS},
            **{
                f"{subset}_predictions": [str(path) for path in paths["prediction_paths"][subset]] for subset in SUBSETS
            },
            **{f"ensemble_{subset}_metrics": str(paths["ensemble_metrics_paths"][subset]) for subset in SUBSETS},
            **{f"ensemble_{subset}_predictions": str(paths["ensemble_prediction_paths"][subset]) for subset in SUBSETS},
        },
        output={"card": str(card_path)},
        params=_settings(inputs) | {"export_folders": inputs["export_folders"][::-1]},
    )
    assert card_path.read_text() == model_card(**inputs)


def test_a_metrics_file_without_a_card_metric_is_a_user_error_naming_it(tmp_path, card_files):
    paths, inputs = card_files
    broken = paths["ensemble_metrics_paths"]["external"]
    metrics = copy.deepcopy(inputs["ensemble_metrics"]["external"])
    del metrics["specificity"]
    write_metrics(metrics, broken)
    with pytest.raises(UserError, match=rf"{re.escape(str(broken))} has no value for 'specificity'"):
        write_model_card(tmp_path / "card.md", **paths, seeds=SEEDS, **_settings(inputs))
    assert not (tmp_path / "card.md").exists()
