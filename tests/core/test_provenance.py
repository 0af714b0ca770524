import subprocess
from pathlib import Path

import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_json
from leukemia_dtl.core.provenance import (
    config_digest,
    git_state,
    package_version,
    read_run_provenance,
    run_provenance,
    short_commit,
    short_digest,
    write_run_provenance,
)

ARCHIVE_HEX = "68c7afaf3ab2a8d8b4c263520fd1c28b2288c73d36741217b6fd70d8f35d0f42"
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_JOB_PARTITION": "gpu", "CUDA_VISIBLE_DEVICES": "0"}


def git(repository: Path, *arguments: str) -> str:
    # Identity and signing given here, so that the test does not depend on the machine's git config.
    command = ["git", "-C", str(repository), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    command += ["-c", "commit.gpgsign=false", *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repository(tmp_path) -> Path:
    """A git repository with one committed file and an ignored folder."""
    folder = tmp_path / "repo"
    folder.mkdir()
    git(folder, "init", "--quiet")
    (folder / "Snakefile").write_text("rule all:\n")
    (folder / ".gitignore").write_text("results/\n")
    git(folder, "add", "Snakefile", ".gitignore")
    git(folder, "commit", "--quiet", "-m", "first")
    return folder


@pytest.fixture
def checksum_file(tmp_path) -> Path:
    path = tmp_path / "archive.sha256"
    path.write_text(f"{ARCHIVE_HEX}  C-NMC_Leukemia-demo.zip\n")
    return path


def provenance(repository: Path, checksum_file: Path | None, params: dict | None = None) -> dict:
    return run_provenance(
        rule_params=params or {"model_name": "vgg19", "seed": 0},
        archive_checksum_file=checksum_file,
        device="CPU: test (2 cores usable)",
        keras_backend="tensorflow",
        slurm=SLURM,
        repository=repository,
    )


def test_clean_tree_records_head_and_unmodified(repository):
    state = git_state(repository)
    assert state == {"commit": git(repository, "rev-parse", "HEAD"), "modified": False, "error": None}
    assert len(state["commit"]) == 40


def test_editing_a_tracked_file_marks_the_tree_modified(repository):
    (repository / "Snakefile").write_text("rule all:\n    input: []\n")
    assert git_state(repository)["modified"] is True


def test_an_untracked_file_marks_it_modified_and_an_ignored_one_does_not(repository):
    (repository / "results").mkdir()
    (repository / "results" / "model.keras").write_text("weights")
    assert git_state(repository)["modified"] is False
    (repository / "new_rule.smk").write_text("")
    assert git_state(repository)["modified"] is True


def test_a_folder_outside_any_repository_gives_null_and_the_reason(tmp_path):
    state = git_state(tmp_path)
    assert state["commit"] is None and state["modified"] is None
    assert "not a git repository" in state["error"]


def test_without_git_on_the_path_the_record_is_still_written(repository, checksum_file, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    record = write_run_provenance(
        tmp_path / "provenance.json",
        rule_params={"seed": 0},
        archive_checksum_file=checksum_file,
        device="cpu",
        keras_backend="jax",
        slurm={},
        repository=repository,
    )
    assert record["git"] == {"commit": None, "modified": None, "error": "git is not installed"}
    assert read_json(tmp_path / "provenance.json")["git"]["error"] == "git is not installed"


def test_config_digest_ignores_key_order_and_follows_values():
    params = {"model_options": {"dropout": 0.5, "learning_rate": 0.001}, "seed": 0, "augmentation": {"zoom": 0.1}}
    reordered = {"augmentation": {"zoom": 0.1}, "seed": 0, "model_options": {"learning_rate": 0.001, "dropout": 0.5}}
    changed = {"model_options": {"dropout": 0.5, "learning_rate": 0.0001}, "seed": 0, "augmentation": {"zoom": 0.1}}
    assert config_digest(params) == config_digest(reordered)
    assert config_digest(params) != config_digest(changed)
    assert config_digest(params).startswith("sha256:") and len(config_digest(params)) == len("sha256:") + 64


def test_values_json_cannot_hold_are_recorded_as_text(repository, checksum_file):
    params = {"backup_dir": Path("results/resume/random/vgg19/seed0"), "seeds": (0, 1)}
    record = provenance(repository, checksum_file, params)
    assert record["config"] == {"backup_dir": "results/resume/random/vgg19/seed0", "seeds": [0, 1]}
    assert record["config_digest"] == config_digest(
        {"backup_dir": "results/resume/random/vgg19/seed0", "seeds": [0, 1]}
    )


def test_record_holds_archive_packages_device_and_slurm(repository, checksum_file, tmp_path):
    path = tmp_path / "models" / "provenance.json"
    write_run_provenance(
        path,
        rule_params={"seed": 1, "model_name": "vgg19"},
        archive_checksum_file=checksum_file,
        device="NVIDIA H100",
        keras_backend="jax",
        slurm=SLURM,
        repository=repository,
    )
    record = read_run_provenance(path)
    assert record["archive_sha256"] == ARCHIVE_HEX
    assert record["packages"]["numpy"] == np.__version__
    assert list(record["packages"]) == sorted(record["packages"])
    assert (record["device"], record["keras_backend"], record["slurm"]) == ("NVIDIA H100", "jax", SLURM)
    assert record["config"] == {"model_name": "vgg19", "seed": 1}
    assert record["git"]["commit"] == git(repository, "rev-parse", "HEAD")
    assert record["created"].endswith("+00:00")


def test_a_folder_source_has_no_archive(repository):
    assert provenance(repository, None)["archive_sha256"] is None


@pytest.mark.parametrize("text", ["", "not-a-digest  archive.zip\n", "68c7afaf  archive.zip\n"])
def test_a_malformed_checksum_file_is_a_user_error(repository, tmp_path, text):
    path = tmp_path / "archive.sha256"
    path.write_text(text)
    with pytest.raises(UserError, match=r"archive\.sha256 does not start with a sha256"):
        provenance(repository, path)


def test_a_missing_checksum_file_is_a_user_error(repository, tmp_path):
    with pytest.raises(UserError, match="Cannot read the archive checksum file"):
        provenance(repository, tmp_path / "absent.sha256")


def test_a_record_lacking_fields_is_a_user_error_naming_the_file(tmp_path):
    path = tmp_path / "provenance.json"
    path.write_text('{"git": {}}')
    with pytest.raises(UserError, match=r"provenance\.json lacks config_digest, archive_sha256"):
        read_run_provenance(path)


def test_package_version_matches_any_spelling_of_the_name():
    packages = {"tensorflow_cpu": "2.21.0", "Keras": "3.15.1"}
    assert package_version(packages, "tensorflow", "tensorflow-cpu") == "2.21.0"
    assert package_version(packages, "keras") == "3.15.1"
    assert package_version(packages, "jax") is None


def test_short_forms():
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert short_commit({"commit": sha, "modified": True}) == "0123456 (modified)"
    assert short_commit({"commit": sha, "modified": False}) == "0123456"
    assert short_commit({"commit": None, "modified": None, "error": "git is not installed"}) == "unknown"
    assert short_digest("sha256:" + "ab" * 32) == "abababababab"
    assert short_digest(None) == "n/a"
