"""The grouped cross-validation (split scheme folds) end to end on the demo archive, as config/demo_folds.yaml runs
it (with two epochs per model): three rotations, each testing on one of the organisers' folds, pooled so that every
training image is predicted once by a model that never saw its subject, then scored and tabled like any scheme."""

import json

import numpy as np
import pytest
import yaml

from conftest import DEMO_SCHEDULING, run_snakemake
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.vocabulary import FOLD_ROTATIONS

pytestmark = pytest.mark.workflow

MODELS = ("vgg19", "efficientnetb3")


# What the tests read; the figures and the method figure are the same rules as every scheme's (tests/test_workflow.py).
TARGETS = [
    *(f"results/tables/folds/{name}.tsv" for name in ("table1_extended", "table2_compute", "subjects", "challenge")),
    "results/tables/runs.tsv",
]


@pytest.fixture(scope="module")
def folds_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("folds-run")
    # Two epochs per model: these tests check how the rotations are split, pooled and tabled, which does not depend
    # on how long each model trains (tests/test_workflow.py trains the demo's ten epochs).
    short = workdir / "short_training.yaml"
    short.write_text(yaml.safe_dump({"models": {model: {"epochs": 2} for model in MODELS}}))
    # The targets come first: --configfile takes every word after it.
    run = ("--cores", "2", *DEMO_SCHEDULING, "--configfile", "config/demo.yaml", "config/demo_folds.yaml")
    run = (*run, str(short))
    result = run_snakemake(*TARGETS, *run, workdir=workdir, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir / "results"


def test_every_training_image_is_tested_once_by_the_rotation_that_held_its_fold_out(folds_run):
    kept = read_tsv(folds_run / "data" / "kept.tsv")
    for model in MODELS:
        pooled = read_tsv(folds_run / "predictions" / "folds" / model / "seed0" / "test.tsv").set_index("path")
        assert sorted(pooled.index) == sorted(kept["path"])
        for rotation in FOLD_ROTATIONS:
            split = read_tsv(folds_run / "splits" / f"{rotation}.tsv")
            held_out = read_tsv(folds_run / "predictions" / rotation / model / "seed0" / "test.tsv").set_index("path")
            # The rotation's test images are its fold, none of whose subjects it trained or validated on.
            trained_on = set(split.loc[split["subset"].isin(["train", "val"]), "subject"])
            assert not trained_on & set(held_out["subject"])
            np.testing.assert_allclose(
                pooled.loc[held_out.index, "p_all"].astype(float), held_out["p_all"].astype(float), atol=1e-12
            )


def test_an_external_image_gets_the_mean_of_the_three_rotations(folds_run):
    for model in MODELS:
        pooled = read_tsv(folds_run / "predictions" / "folds" / model / "seed0" / "external.tsv").set_index("path")
        rotations = [
            read_tsv(folds_run / "predictions" / rotation / model / "seed0" / "external.tsv").set_index("path")
            for rotation in FOLD_ROTATIONS
        ]
        mean = np.mean([rotation.loc[pooled.index, "p_all"].astype(float) for rotation in rotations], axis=0)
        np.testing.assert_allclose(pooled["p_all"].astype(float), mean, atol=1e-12)


def test_the_pooled_test_set_has_enough_subjects_for_subject_intervals_and_tables(folds_run):
    for model in MODELS:
        metrics = json.loads((folds_run / "metrics" / "folds" / model / "ensemble" / "test.json").read_text())
        # The demo's 3 ALL and 2 HEM subjects per fold, all three folds: a fixed patient split's test has 1 and 1.
        assert metrics["subject_support"] == {"ALL": 9, "HEM": 6}
        auc = metrics["roc_auc"]
        assert auc["subject_ci_low"] <= auc["value"] <= auc["subject_ci_high"]
    tables = folds_run / "tables" / "folds"
    table1 = read_tsv(tables / "table1_performance.tsv")
    assert len(table1) == 2 * 9 and (table1["vgg19_n_seeds"] == "1").all()
    extended = read_tsv(tables / "table1_extended.tsv")
    ensemble_test = extended[(extended["subset"] == "test") & (extended["predictions"] == "ensemble")]
    assert ensemble_test["vgg19_subject_ci_low"].astype(float).notna().all()
    assert len(read_tsv(tables / "subjects.tsv")) == 2 * 2 and "Mondal" in (tables / "challenge.md").read_text()
    # Table 2 over the rotations' runs: 3 per model (0 where no run measured a quantity: GPU memory on a CPU).
    runs_counted = read_tsv(tables / "table2_compute.tsv")["vgg19_n_seeds"].astype(int)
    assert set(runs_counted) <= {0, 3} and (runs_counted == 3).sum() >= 5
    # Per trained model only: the folds scheme has no model card or Grad-CAM panel of its own.
    assert not (folds_run / "model_cards" / "folds").exists()
    runs = read_tsv(folds_run / "tables" / "runs.tsv")
    assert sorted(set(runs["scheme"])) == list(FOLD_ROTATIONS) and len(runs) == 3 * 2
