"""The demo as its users run it, from an empty folder, and what a change to its config reruns (dry-runs on its
results)."""

import importlib.metadata
import json
import re
import subprocess
import zipfile

import numpy as np
import pytest
import yaml

from conftest import DEMO_SCHEDULING, REPO, planned_jobs, run_snakemake
from leukemia_dtl.core.fileio import read_tsv

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo as `make demo` runs it: tuned (features -> tune -> select -> train -> ...), both schemes,
    test-time augmentation on, one thread per job."""
    workdir = tmp_path_factory.mktemp("demo-run")
    # The whole demo in one run: about 6 minutes here, more on a loaded machine.
    result = run_snakemake(
        "--cores", "2", *DEMO_SCHEDULING, "--configfile", "config/demo.yaml", workdir=workdir, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir / "results"


def test_the_demo_run_schedules_its_jobs_as_make_demo_does():
    """The Makefile cannot import conftest: its demo command is checked against DEMO_SCHEDULING here."""
    recipe = (REPO / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
    (command,) = re.findall(r"^\t\$\(VENV\)/bin/snakemake (.*)$", recipe, re.MULTILINE)
    assert " ".join(DEMO_SCHEDULING) in command


def test_demo_run_writes_the_inventory_and_reports_the_corrupt_image(demo_run):
    inventory = read_tsv(demo_run / "data" / "inventory.tsv")
    assert list(inventory.columns) == ["path", "subject", "label", "source"]
    rejected = read_tsv(demo_run / "data" / "rejected.tsv")
    assert len(rejected) == 1 and "cannot decode" in rejected["reason"].iloc[0]
    assert "rejected" in (demo_run / "logs" / "inventory.log").read_text()


def test_demo_run_excludes_everything_but_the_training_folds(demo_run):
    excluded = read_tsv(demo_run / "data" / "excluded.tsv")
    assert set(excluded["source"]) == {"prelim", "final"}
    summary = read_tsv(demo_run / "data" / "exclusion_summary.tsv")
    assert set(summary["status"]) == {"kept", "excluded"}


def test_demo_run_splits_both_schemes_with_leakage_reports(demo_run):
    for scheme in ("random", "patient"):
        split = read_tsv(demo_run / "splits" / f"{scheme}.tsv")
        assert set(split["subset"]) == {"train", "val", "test", "external"}
        leakage = read_tsv(demo_run / "splits" / f"{scheme}_leakage.tsv").set_index("subset")
        leaked = int(leakage.loc["test", "images_with_subject_in_train"])
        assert leaked == 0 if scheme == "patient" else leaked > 0


def test_demo_run_caches_every_split_image_once(demo_run):
    size = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["image_size"]
    images = np.load(demo_run / "cache" / f"{size}px" / "images.npy", mmap_mode="r")
    index = read_tsv(demo_run / "cache" / f"{size}px" / "index.tsv")
    assert images.shape == (len(index), size, size, 3)
    for scheme in ("random", "patient"):
        split = read_tsv(demo_run / "splits" / f"{scheme}.tsv")
        assert set(split["path"]) <= set(index["path"])
    assert (demo_run / "benchmarks" / "build_image_cache" / f"{size}px.tsv").exists()


def test_demo_run_trains_both_models_per_scheme_and_seed(demo_run):
    for scheme in ("random", "patient"):
        for model in ("vgg19", "efficientnetb3"):
            for seed in (0, 1):
                run = f"{scheme}/{model}/seed{seed}"
                history = read_tsv(demo_run / "models" / run / "history.tsv")
                assert history["epoch"].astype(int).tolist() == list(range(1, len(history) + 1))
                stats = json.loads((demo_run / "models" / run / "train_stats.json").read_text())
                assert stats["model"] == model and stats["seed"] == seed and stats["params_total"] > 1_000_000
                split = read_tsv(demo_run / "splits" / f"{scheme}.tsv")
                for subset in ("val", "test", "external"):
                    predictions = read_tsv(demo_run / "predictions" / run / f"{subset}.tsv")
                    assert sorted(predictions["path"]) == sorted(split.loc[split["subset"] == subset, "path"])
                    assert predictions["p_all"].astype(float).between(0, 1).all()
                    metrics = json.loads((demo_run / "metrics" / run / f"{subset}.json").read_text())
                    assert (
                        metrics["accuracy"]["ci_low"] <= metrics["accuracy"]["value"] <= metrics["accuracy"]["ci_high"]
                    )


def test_demo_run_compares_the_models_and_writes_tables_and_figures(demo_run):
    for scheme in ("random", "patient"):
        ttests = read_tsv(demo_run / "stats" / scheme / "paired_ttests.tsv")
        assert set(ttests["subset"]) == {"val", "test", "external"} and (ttests["n_seeds"] == "2").all()
        mcnemar = read_tsv(demo_run / "stats" / scheme / "mcnemar.tsv")
        assert len(mcnemar) == 2 * 2 and set(mcnemar["method"]) <= {"exact", "chi2_cc"}
        assert len(read_tsv(demo_run / "stats" / scheme / "delong.tsv")) == 4
        table1 = (demo_run / "tables" / scheme / "table1_performance.md").read_text()
        assert "Overall Accuracy" in table1 and "Cohen's Kappa" in table1 and "training-noise" in table1
        # The subject-level comparison of the ensembles: 2 subsets x (2 ensembles + 4 seed sets) x 9 metrics.
        comparison = read_tsv(demo_run / "stats" / scheme / "subject_comparison.tsv")
        assert len(comparison) == 2 * 6 * 9 and set(comparison["independent_unit"]) == {"subject"}
        ensemble_mcnemar = read_tsv(demo_run / "stats" / scheme / "ensemble_mcnemar.tsv")
        assert len(ensemble_mcnemar) == 2 * 2 and set(ensemble_mcnemar["independent_unit"]) == {"image"}
        table2 = (demo_run / "tables" / scheme / "table2_compute.md").read_text().splitlines()
        assert table2[2].startswith("Measured on: ") and "backend" in table2[2] and "Training time" in table2[6]
        for name in ("training_curves", "roc_test", "confusion_external", "reliability_test", "forest_test"):
            for ext in ("png", "pdf"):
                assert (demo_run / "figures" / scheme / f"{name}.{ext}").stat().st_size > 1000
    leakage = read_tsv(demo_run / "tables" / "leakage.tsv")
    assert {"test_random", "test_patient", "test_random_minus_test_patient"} <= set(leakage.columns)


def test_demo_run_scores_subjects_validation_thresholds_ensembles_and_tta(demo_run):
    for scheme in ("random", "patient"):
        for model in ("vgg19", "efficientnetb3"):
            predictions = demo_run / "predictions" / scheme / model
            seeds = [read_tsv(predictions / f"seed{seed}" / "test.tsv") for seed in (0, 1)]
            ensemble = read_tsv(predictions / "ensemble" / "test.tsv")
            assert list(ensemble["path"]) == list(seeds[0]["path"])
            mean = np.mean([seed.set_index("path").loc[ensemble["path"], "p_all"].astype(float) for seed in seeds], 0)
            np.testing.assert_allclose(ensemble["p_all"].astype(float), mean, atol=1e-12)
            tta = read_tsv(predictions / "seed0" / "tta" / "test.tsv")
            assert list(tta["path"]) == list(seeds[0]["path"])
            assert not np.allclose(tta["p_all"].astype(float), seeds[0]["p_all"].astype(float))
            for members in ("seed0", "ensemble", "seed1/tta", "ensemble/tta"):
                metrics = json.loads((demo_run / "metrics" / scheme / model / members / "external.json").read_text())
                # Two external subjects per class, fewer than statistics.min_subjects_per_class (5): no subject
                # interval, where an image interval is.
                assert metrics["subject_support"] == {"ALL": 2, "HEM": 2} and metrics["min_subjects_per_class"] == 5
                assert metrics["roc_auc"]["subject_ci_low"] is None and metrics["roc_auc"]["ci_low"] is not None
                assert 0 < metrics["validation_threshold"] <= 1
                assert metrics["at_validation_threshold"]["threshold"] == metrics["validation_threshold"]
            submission = (demo_run / "challenge" / scheme / model / "isbi_valid.predict").read_text().split()
            assert len(submission) == 20 and set(submission) <= {"0", "1"}  # the demo's 20 final-phase images
        extended = read_tsv(demo_run / "tables" / scheme / "table1_extended.tsv")
        assert {"ensemble", "seeds, validation threshold", "TTA seeds", "TTA ensemble"} <= set(extended["predictions"])
        assert (
            "n/a (2 ALL and 2 HEM subjects, fewer than 5)"
            in (demo_run / "tables" / scheme / "table1_extended.md").read_text()
        )
        table1 = read_tsv(demo_run / "tables" / scheme / "table1_performance.tsv")
        assert len(table1) == 2 * 9 and "predictions" not in table1.columns
        subjects = read_tsv(demo_run / "tables" / scheme / "subjects.tsv")
        assert len(subjects) == 2 * 2  # models x held-out subsets
        challenge = (demo_run / "tables" / scheme / "challenge.md").read_text()
        assert "Pan" in challenge and "Mondal" in challenge and "EfficientNet-B3" in challenge
        # The demo's patient test subset holds one subject per class: nothing to resample, so no subject interval.
        patient_test = json.loads((demo_run / "metrics" / "patient" / "vgg19" / "ensemble" / "test.json").read_text())
        assert patient_test["subject_support"] == {"ALL": 1, "HEM": 1}
        assert patient_test["roc_auc"]["subject_ci_low"] is None and patient_test["roc_auc"]["ci_low"] is not None
        ensemble_tests = read_tsv(demo_run / "stats" / scheme / "ensemble_delong.tsv")
        assert len(ensemble_tests) == 2 * 2 * 2 * 2  # models x kinds x held-out subsets x seeds


RUNS = [
    (scheme, model, seed)
    for scheme in ("random", "patient")
    for model in ("vgg19", "efficientnetb3")
    for seed in (0, 1)
]


def test_demo_run_records_each_runs_provenance_and_overview(demo_run):
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    archive_sha256 = (demo_run / "data" / "archive.sha256").read_text().split()[0]
    digests = set()
    for scheme, model, seed in RUNS:
        provenance = json.loads((demo_run / "models" / scheme / model / f"seed{seed}" / "provenance.json").read_text())
        assert provenance["git"]["commit"] == commit.strip()
        assert provenance["archive_sha256"] == archive_sha256
        assert provenance["packages"]["keras"] == importlib.metadata.version("keras")
        assert provenance["config"]["seed"] == seed and provenance["config"]["model_name"] == model
        digests.add(provenance["config_digest"])
    assert len(digests) == len(RUNS)  # every run trained with its own params (model, seed, resume folder)
    runs = read_tsv(demo_run / "tables" / "runs.tsv")
    assert len(runs) == len(RUNS)
    for _, row in runs.iterrows():
        metrics = demo_run / "metrics" / row["scheme"] / row["model"] / f"seed{row['seed']}"
        for subset in ("test", "external"):
            auc = json.loads((metrics / f"{subset}.json").read_text())["roc_auc"]["value"]
            assert float(row[f"{subset}_roc_auc"]) == pytest.approx(auc, abs=5e-4)
    assert len(read_tsv(demo_run / "tables" / "provenance.tsv")) == len(RUNS)


def test_demo_run_writes_model_cards_and_gradcam_panels(demo_run):
    for scheme in ("random", "patient"):
        for model in ("vgg19", "efficientnetb3"):
            card = (demo_run / "model_cards" / scheme / f"{model}.md").read_text()
            assert "diagnosis" in card and "ECE" in card and "Brier" in card
            external = json.loads((demo_run / "metrics" / scheme / model / "ensemble" / "external.json").read_text())
            assert f"{external['roc_auc']['value']:.3f}" in card
            assert (f"models/{scheme}/{model}/seed0/model.keras") in card
            for ext in ("png", "pdf"):
                assert (demo_run / "figures" / scheme / f"gradcam_{model}.{ext}").stat().st_size > 1000
    assert "image-level" in (demo_run / "model_cards" / "random" / "vgg19.md").read_text()


def test_classify_scores_the_demo_images_as_the_workflow_did(demo_run):
    # As config/classify.yaml says: the demo's extracted archive, scored by the patient split's B3 ensemble.
    arguments = ("classify", "--cores", "2", "--configfile", "config/demo.yaml", "config/classify.yaml")
    result = run_snakemake(*arguments, workdir=demo_run.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    model = yaml.safe_load((REPO / "config" / "classify.yaml").read_text())["classify"]["model"]
    scored = read_tsv(demo_run / "classify" / "predictions.tsv")
    # Paths are relative to the folder classified: the archive's top folder, then the dataset's own paths.
    scored["path"] = scored["path"].str.removeprefix("C-NMC_Leukemia/")
    scored = scored.set_index("path")
    assert (scored["model"] == model).all()
    for subset in ("test", "external"):
        dump = read_tsv(demo_run / "predictions" / model / f"{subset}.tsv").set_index("path")
        np.testing.assert_allclose(
            scored.loc[dump.index, "p_all"].astype(float), dump["p_all"].astype(float), atol=1e-4
        )
        assert (scored.loc[dump.index, "pred"] == dump["pred"]).all()
    # The demo archive's corrupt image cannot be read: it is listed with a reason, never scored.
    corrupt = set(read_tsv(demo_run / "data" / "rejected.tsv")["path"])
    rejected = read_tsv(demo_run / "classify" / "rejected.tsv")
    assert corrupt <= set(rejected["path"].str.removeprefix("C-NMC_Leukemia/")) and not corrupt & set(scored.index)
    assert rejected["reason"].str.len().gt(0).all()


def test_export_writes_saved_models_and_onnx_files_that_match_the_keras_models(demo_run):
    import onnxruntime
    import tensorflow as tf

    from leukemia_dtl.model.classifiers import load_model
    from leukemia_dtl.model.inference import class_probabilities

    # One of the demo's 8 models (an export takes about 40 s here): the rule does nothing model- or scheme-specific,
    # tests/model/test_export.py exports both architectures, and the documented-commands test dry-runs the
    # `export` target.
    scheme, model, seed = "random", "vgg19", 0
    export = demo_run / "export" / scheme / model / f"seed{seed}"
    target = f"results/export/{scheme}/{model}/seed{seed}/export_check.json"
    result = run_snakemake(target, "--cores", "2", "--configfile", "config/demo.yaml", workdir=demo_run.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert planned_jobs(result.stderr) == {"export_model": 1}  # a real run logs to stderr
    check = json.loads((export / "export_check.json").read_text())
    assert check["saved_model_max_abs_diff"] <= 1e-4 and check["onnx_max_abs_diff"] <= 1e-4
    images = np.load(demo_run / "cache" / "32px" / "images.npy", mmap_mode="r")[:24].astype("float32")
    logits = load_model(demo_run / "models" / scheme / model / f"seed{seed}" / "model.keras").predict(images, verbose=0)
    # The exports output the probability pair softmax(z), as the workflow reads it from the Keras logits.
    expected = class_probabilities(logits)
    # Held in a name: TensorFlow deletes a loaded SavedModel's variables with the object.
    saved_model = tf.saved_model.load(str(export / "saved_model"))
    served = saved_model.serve(tf.constant(images)).numpy()
    session = onnxruntime.InferenceSession(str(export / "model.onnx"))
    (onnx_output,) = session.run(None, {session.get_inputs()[0].name: images})
    np.testing.assert_allclose(served, expected, atol=1e-4)
    np.testing.assert_allclose(onnx_output, expected, atol=1e-4)


def test_demo_report_builds(demo_run):
    report = demo_run / "report.zip"
    result = run_snakemake("--configfile", "config/demo.yaml", "--report", str(report), workdir=demo_run.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = zipfile.ZipFile(report).namelist()
    assert any(name.endswith("table1_performance.tsv") for name in names)
    assert any(name.endswith("roc_test.png") for name in names)
    for new_output in (
        "table1_extended.tsv",
        "subject_comparison.tsv",
        "forest_test.png",
        "subjects.tsv",
        "challenge.tsv",
        "ensemble_delong.tsv",
        "isbi_valid.predict",
        "gradcam_efficientnetb3.png",
        "efficientnetb3.md",
        "runs.tsv",
        "provenance.tsv",
    ):
        assert any(name.endswith(new_output) for name in names), new_output
    # docutils renders a problem in the report's reStructuredText (such as a result category named like one of
    # Snakemake's own pages: "Statistics") as a "System Message" box on the report's front page.
    with zipfile.ZipFile(report) as archive:
        pages = [archive.read(name).decode("utf-8", "replace") for name in names if name.endswith(".html")]
    assert pages and not [page for page in pages if "System Message" in page]


def test_demo_rerun_has_nothing_to_do(demo_run):
    result = run_snakemake("-n", "--configfile", "config/demo.yaml", workdir=demo_run.parent)
    assert "Nothing to be done" in result.stdout + result.stderr


def planned_after_change(demo_run, changes: dict, *targets: str) -> dict[str, int]:
    """What a dry-run plans after a config change (a YAML overlay: --config would turn numbers to strings)."""
    overlay = demo_run.parent / "change.yaml"
    overlay.write_text(yaml.safe_dump(changes))
    result = run_snakemake("-n", *targets, "--configfile", "config/demo.yaml", str(overlay), workdir=demo_run.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return planned_jobs(result.stdout)


def test_adding_the_folds_scheme_trains_only_its_rotations(demo_run):
    jobs = planned_after_change(demo_run, {"split": {"schemes": ["random", "patient", "folds"]}})
    # 3 rotations x 2 models x 2 seeds; each rotation is split and tuned; the splits and models so far stay.
    assert jobs["train_model"] == 12 and jobs["split_dataset"] == 3 and jobs["tune_model"] == 3 * 2 * 4
    assert jobs["pool_fold_predictions"] == 2 * 2 * 2  # models x seeds x (plain, TTA)
    assert jobs["performance_tables"] == 1 and jobs["compare_models"] == 1
    assert not {"inventory", "build_image_cache", "leakage_table", "model_card", "plot_gradcam"} & set(jobs)


def test_toggling_tta_retrains_nothing(demo_run):
    """Turning evaluation.tta off after the demo (which has it on) plans what turning it on plans: Snakemake
    reruns a job when its params or inputs change, and a toggle changes the same params in either direction."""
    jobs = planned_after_change(demo_run, {"evaluation": {"tta": False}})
    # Each run's one prediction job writes the TTA sets or not, from the trained model; the final-phase
    # submission averages plain or TTA predictions; the tables that show TTA rows follow.
    assert jobs["predict_model"] == 8 and jobs["challenge_submission"] == 4 and jobs["performance_tables"] == 2
    assert not {"train_model", "tune_model", "extract_features", "build_image_cache"} & set(jobs)


def test_changing_one_models_epochs_retrains_only_that_model(demo_run):
    jobs = planned_after_change(demo_run, {"models": {"vgg19": {"epochs": 4}}})
    assert jobs["train_model"] == 4 and jobs["predict_model"] == 4  # 2 schemes x 2 seeds of vgg19 only
    # Each run's plain and TTA sets, and vgg19's ensembles of both kinds in both schemes.
    assert jobs["evaluate_predictions"] == 8 + 4
    # Tuning runs its own epochs: an epochs change leaves it alone.
    assert not {"build_image_cache", "split_dataset", "inventory", "tune_model", "extract_features"} & set(jobs)


def test_turning_tensorboard_logs_on_retrains_every_run_and_nothing_upstream(demo_run):
    jobs = planned_after_change(demo_run, {"logging": {"tensorboard": True}})
    # Logs come from training: each of the 8 runs trains again, then what reads its model.
    assert jobs["train_model"] == 8 and jobs["predict_model"] == 8
    assert not {"build_image_cache", "split_dataset", "tune_model", "extract_features"} & set(jobs)


def test_demo_tunes_each_model_and_trains_with_its_selection(demo_run):
    grid = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["tuning"]["grid"]
    for scheme in ("random", "patient"):
        for model in ("vgg19", "efficientnetb3"):
            tuning = demo_run / "tuning" / scheme / model
            ranking = read_tsv(tuning / "ranking.tsv")
            assert len(ranking) == 4 and (ranking["path"] == "features").all()
            selected = yaml.safe_load((tuning / "selected.yaml").read_text())
            assert all(selected["hyperparameters"][axis] in values for axis, values in grid.items())
            assert (tuning / "heatmap.png").stat().st_size > 1000
            for seed in (0, 1):
                run = demo_run / "models" / scheme / model / f"seed{seed}"
                stats = json.loads((run / "train_stats.json").read_text())
                for axis, value in selected["hyperparameters"].items():
                    assert stats["model_options"][axis] == value


def test_both_demo_models_beat_chance_on_the_test_subset(demo_run):
    for model in ("vgg19", "efficientnetb3"):
        runs = [demo_run / "metrics" / "random" / model / f"seed{seed}" for seed in (0, 1)]
        aucs = [json.loads((run / "test.json").read_text())["roc_auc"]["value"] for run in runs]
        assert min(aucs) > 0.5 and np.mean(aucs) > 0.65, (model, aucs)


def test_adding_a_grid_value_reruns_only_its_tuning_jobs_and_the_selections(demo_run):
    grid = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["tuning"]["grid"]
    jobs = planned_after_change(demo_run, {"tuning": {"grid": {"dropout": [*grid["dropout"], 0.7]}}}, "tune")
    # One new dropout value x 2 learning rates, for 2 schemes x 2 models; the features stay.
    assert jobs == {"tune_model": 8, "select_hyperparameters": 4, "tune": 1}


def test_adding_a_seed_runs_only_that_seed_and_the_aggregates(demo_run):
    jobs = planned_after_change(demo_run, {"seeds": [0, 1, 2]})
    assert jobs["train_model"] == 4  # 2 schemes x 2 models, seed 2
    # Seed 2's plain and TTA sets, and every ensemble (2 schemes x 2 models x 2 kinds), which now averages 3 seeds.
    assert jobs["evaluate_predictions"] == 8 + 8 and jobs["ensemble_predictions"] == 8
    assert jobs["compare_models"] == 2 and jobs["leakage_table"] == 1
    assert not {"build_image_cache", "split_dataset"} & set(jobs)


def test_changing_the_image_size_rebuilds_caches_but_not_splits(demo_run):
    jobs = planned_after_change(demo_run, {"image_size": 40})
    assert jobs["build_image_cache"] == 1 and jobs["train_model"] == 8
    assert not {"inventory", "exclude_subsets", "split_dataset"} & set(jobs)


def test_changing_bootstrap_resamples_reruns_only_the_evaluation(demo_run):
    jobs = planned_after_change(demo_run, {"statistics": {"bootstrap_resamples": 300}})
    # 2 schemes x 2 models x (2 seeds + the ensemble) x (plain + TTA).
    assert jobs["evaluate_predictions"] == 24
    assert not {"train_model", "predict_model", "build_image_cache"} & set(jobs)
