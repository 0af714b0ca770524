"""Faults in the data rules' inputs (issue #13, items 6 to 8), injected for real and run through Snakemake: a
dataset folder with too many rejected files stops the inventory rule, a zip bomb the extract rule, and the
Kaggle client, asked to print its requests and run with throw-away credentials while the network is blocked,
lets no secret reach the console, the logs or the results. The functions behind them are unit-tested in
tests/data/test_inventory.py and tests/data/test_archive.py."""

import base64
import json
import shutil

import pytest
import yaml

from conftest import run_snakemake
from leukemia_dtl.core.vocabulary import DATASET_DIR
from zip_bombs import write_zip_bomb

pytestmark = pytest.mark.workflow


def test_the_inventory_rule_stops_without_output_when_the_config_limit_is_passed(demo_dataset, tmp_path):
    """The limit reaches the rule through params: the inventory job fails and writes neither table."""
    dataset = shutil.copytree(demo_dataset, tmp_path / DATASET_DIR)
    for image in (dataset / "training_data/fold_1/all").iterdir():
        image.rename(image.with_suffix(".BMP.bak"))
    overlay = tmp_path / "directory.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"source": "directory", "directory": str(dataset.parent)}}))
    workdir = tmp_path / "run"
    result = run_snakemake(
        "results/data/inventory.tsv", "--cores", "1", "--configfile", "config/demo.yaml", overlay, workdir=workdir
    )
    assert result.returncode != 0
    log = (workdir / "results/logs/inventory.log").read_text()
    assert "files were rejected" in log and "fold_1" in log
    assert not (workdir / "results/data/inventory.tsv").exists()
    assert not (workdir / "results/data/rejected.tsv").exists()


def test_the_extract_rule_refuses_a_zip_bomb_and_writes_nothing(tmp_path):
    archive = tmp_path / "leukemia-classification.zip"
    write_zip_bomb(archive)
    overlay = tmp_path / "archive.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"source": "archive", "archive": str(archive)}}))
    workdir = tmp_path / "run"
    result = run_snakemake(
        "results/data/archive.sha256", "--cores", "1", "--configfile", "config/demo.yaml", overlay, workdir=workdir
    )
    assert result.returncode != 0
    assert "times its own size" in (workdir / "results/logs/extract_archive.log").read_text()
    assert list((workdir / "results/data").glob("**/*")) == []


# A port nothing listens on: every request through this proxy fails at once, as on a machine offline.
BLOCKED_NETWORK = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
THROWAWAY_USER, THROWAWAY_KEY = "throwaway-user", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
THROWAWAY_TOKEN = "KGAT_throwaway0123456789abcdef0123456789"
SECRETS = [
    THROWAWAY_KEY,
    base64.b64encode(f"{THROWAWAY_USER}:{THROWAWAY_KEY}".encode()).decode(),  # the Basic auth header
    THROWAWAY_TOKEN,
]


@pytest.mark.parametrize(
    "credential", ["legacy key in kaggle.json", "token in KAGGLE_API_TOKEN", "token with a stray carriage return"]
)
def test_no_kaggle_credential_reaches_the_console_logs_or_results(tmp_path, monkeypatch, credential):
    """The client prints each request with its headers when VERBOSE or VERBOSE_OUTPUT is set: with a legacy
    key it signs in offline and prints the download request (Basic auth); with a token it prints the token
    check. A token with a stray carriage return (exported from a file saved on Windows) makes the request
    fail with an error that quotes the header; offline, the client's plain-HTTP local endpoint shows that
    error before connecting. The download_kaggle rule runs for real; no secret may appear anywhere."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    for variable in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_ENVIRONMENT"):
        monkeypatch.delenv(variable, raising=False)
    if credential == "legacy key in kaggle.json":
        key_file = home / ".kaggle" / "kaggle.json"
        key_file.write_text(json.dumps({"username": THROWAWAY_USER, "key": THROWAWAY_KEY}))
        key_file.chmod(0o600)
    elif credential == "token in KAGGLE_API_TOKEN":
        monkeypatch.setenv("KAGGLE_API_TOKEN", THROWAWAY_TOKEN)
    else:
        monkeypatch.setenv("KAGGLE_API_TOKEN", THROWAWAY_TOKEN + "\r")
        monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    for variable, value in {"HOME": str(home), "KAGGLE_CONFIG_DIR": str(home / ".kaggle"), **BLOCKED_NETWORK}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("VERBOSE", "1")
    monkeypatch.setenv("VERBOSE_OUTPUT", "true")
    overlay = tmp_path / "kaggle.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"source": "kaggle"}}))
    workdir = tmp_path / "run"

    result = run_snakemake(
        "results/data/download/leukemia-classification.zip",
        "--cores",
        "1",
        "--configfile",
        "config/demo.yaml",
        overlay,
        workdir=workdir,
    )

    console = result.stdout + result.stderr
    log = (workdir / "results/logs/download_kaggle.log").read_text()
    assert result.returncode != 0 and "Could not download the Kaggle dataset" in log
    written = {path: path.read_bytes() for path in workdir.rglob("*") if path.is_file()}
    for secret in SECRETS:
        assert secret not in console
        assert [path for path, content in written.items() if secret.encode() in content] == []
    assert not (workdir / "results/data/download/leukemia-classification.zip").exists()
