"""Dry-runs of the shipped configs and profiles, and config mistakes that stop the dry-run naming the key: no job
runs, so these stay off the demo run's worker (tests/test_workflow.py)."""

import pytest
import yaml

from conftest import REPO, planned_jobs, run_snakemake

pytestmark = pytest.mark.workflow


def test_dry_run_of_the_paper_config_downloads_from_kaggle(tmp_path):
    result = run_snakemake("-n", "--cores", "2", "--configfile", "config/config.yaml", workdir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    assert jobs["download_kaggle"] == 1 and jobs["split_dataset"] == 1 and jobs["fetch_weights"] == 1
    assert "results/cache/224px/images.npy" in result.stdout
    # 2 models x 5 seeds, each predicting and evaluating val, test and external in one job; and each model's
    # seed ensemble. The paper's config runs no test-time augmentation.
    assert jobs["train_model"] == 10 and jobs["predict_model"] == 10 and jobs["ensemble_predictions"] == 2
    assert jobs["evaluate_predictions"] == 10 + 2
    assert jobs["challenge_submission"] == 2 and jobs["build_final_phase_cache"] == 1


def test_dry_run_of_the_beyond_overlay_plans_the_challenge_winners_study(tmp_path):
    result = run_snakemake("-n", "--configfile", "config/config.yaml", "config/beyond.yaml", workdir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    # 2 models x 5 seeds under random, patient and each of the three fold rotations, each predicted plain and with
    # TTA by one job; each seed's rotations pooled, plain and TTA; ensembles of both kinds per scheme and model.
    assert jobs["train_model"] == 10 * (1 + 1 + 3) and jobs["predict_model"] == 50
    assert jobs["pool_fold_predictions"] == 10 * 2 and jobs["ensemble_predictions"] == 3 * 2 * 2
    # Per scheme each seed's plain and TTA predictions (pooled for folds), each rotation's own, the ensembles.
    assert jobs["evaluate_predictions"] == 3 * 20 + 3 * 10 + 12


def test_dry_run_with_the_slurm_profile_plans_both_schemes(tmp_path):
    result = run_snakemake(
        "-n",
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--configfile",
        "config/config.yaml",
        "--config",
        "split={'schemes': ['random', 'patient']}",
        workdir=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    assert jobs["train_model"] == 20 and jobs["compare_models"] == 2 and jobs["leakage_table"] == 1


def test_dry_run_of_the_demo_generates_its_archive(tmp_path):
    result = run_snakemake("-n", "--cores", "2", "--configfile", "config/demo.yaml", workdir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    assert "download_kaggle" not in jobs
    assert jobs["generate_demo_archive"] == 1 and jobs["split_dataset"] == 2


def test_a_config_typo_is_rejected_naming_the_key(tmp_path):
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["split"]["sead"] = config["split"].pop("seed")
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake("-n", "--configfile", str(tmp_path / "typo.yaml"), workdir=tmp_path)
    assert result.returncode != 0
    assert "'sead' was unexpected" in result.stdout + result.stderr


def test_dense_units_of_vgg19_stops_the_dry_run_naming_the_key(tmp_path):
    """VGG-19's head has no hidden Dense layer: the schema refuses the option, not the training job."""
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump({"models": {"vgg19": {"dense_units": 64}}}))
    result = run_snakemake("-n", "--configfile", "config/demo.yaml", str(tmp_path / "overlay.yaml"), workdir=tmp_path)
    assert result.returncode != 0
    assert "['models']['vgg19']" in result.stdout + result.stderr
    assert "{'required': ['dense_units']}" in result.stdout + result.stderr


FINE_TUNE = {"layers": 4, "learning_rate": 1e-5, "epochs": 2}


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        (
            {
                "models": {
                    "vgg19": {"freeze_base": False, "fine_tune": {"layers": 4, "learning_rate": 1e-5, "epochs": 2}}
                }
            },
            "set models.vgg19.freeze_base: true or remove models.vgg19.fine_tune",
        ),
        (
            {"classify": {"model": "patient/vgg19/seed7"}},
            "classify.model is patient/vgg19/seed7, but the config trains no seed 7",
        ),
    ],
    ids=["fine_tune with an unfrozen base", "classify.model of an untrained seed"],
)
def test_a_cross_key_mistake_stops_the_dry_run_naming_the_keys(tmp_path, overlay, message):
    """Rules between keys that the schema cannot state: checked when the workflow is parsed, not in a job."""
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    result = run_snakemake("-n", "--configfile", "config/demo.yaml", str(tmp_path / "overlay.yaml"), workdir=tmp_path)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_archive_source_without_a_path_is_rejected(tmp_path):
    result = run_snakemake(
        "-n", "--configfile", "config/config.yaml", "--config", "data={'source': 'archive'}", workdir=tmp_path
    )
    assert result.returncode != 0
    assert "data.archive is not set" in result.stdout + result.stderr
