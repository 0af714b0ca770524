"""The workflow as its users drive it: lint, formatting, dry-runs, config errors and a real demo run."""

import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import REPO, run_snakemake
from leukemia_dtl.fileio import read_tsv

pytestmark = pytest.mark.workflow


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry-run as {rule: count}."""
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_lint_passes():
    result = run_snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_of_the_paper_config_downloads_from_kaggle(tmp_path):
    result = run_snakemake("-n", "--cores", "2", "--configfile", "config/config.yaml", workdir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    assert jobs["download_kaggle"] == 1 and jobs["split_dataset"] == 1
    assert "results/cache/224px/images.npy" in result.stdout


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


def test_archive_source_without_a_path_is_rejected(tmp_path):
    result = run_snakemake(
        "-n", "--configfile", "config/config.yaml", "--config", "data={'source': 'archive'}", workdir=tmp_path
    )
    assert result.returncode != 0
    assert "data.archive is not set" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo-run")
    result = run_snakemake("--cores", "2", "--configfile", "config/demo.yaml", workdir=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "results"


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
    images = np.load(demo_run / "cache" / "64px" / "images.npy", mmap_mode="r")
    index = read_tsv(demo_run / "cache" / "64px" / "index.tsv")
    assert images.shape == (len(index), 64, 64, 3)
    for scheme in ("random", "patient"):
        split = read_tsv(demo_run / "splits" / f"{scheme}.tsv")
        assert set(split["path"]) <= set(index["path"])
    assert (demo_run / "benchmarks" / "build_image_cache" / "64px.tsv").exists()


def test_demo_rerun_has_nothing_to_do(demo_run):
    result = run_snakemake("-n", "--configfile", "config/demo.yaml", workdir=demo_run.parent)
    assert "Nothing to be done" in result.stdout + result.stderr
