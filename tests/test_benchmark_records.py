"""tests/benchmark.py writes down what it prints: one JSON file per run under --results, holding every printed
figure with what measured it (command line, git commit, machine, Keras backend, package versions), so that the
numbers the documentation quotes come from files."""

import ast
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import REPO


def run_benchmark(results: Path, *arguments: str, **environment: str) -> tuple[str, dict]:
    """Run ``tests/benchmark.py --results results *arguments``; its printed output and the record it wrote."""
    command = [sys.executable, str(REPO / "tests" / "benchmark.py"), "--results", str(results), *arguments]
    answer = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, **environment}
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    records = list(results.iterdir())
    assert len(records) == 1, records
    assert f"figures written to {records[0]}" in answer.stdout
    record = json.loads(records[0].read_text())
    started = datetime.fromisoformat(record["started_utc"])
    assert records[0].name == f"{arguments[0]}-{started.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"
    return answer.stdout, record


def assert_says_what_measured(record: dict, section: str, arguments: list[str]) -> None:
    assert record["section"] == section
    assert record["command_line"][2:] == arguments
    assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["commit"]), record["git"]
    assert isinstance(record["git"]["modified"], bool)
    machine = record["machine"]
    assert machine["hostname"] and machine["platform"] and machine["cpu"]
    assert machine["logical_cores"] == os.cpu_count()
    assert machine["memory_total_gib"] > 0
    assert "gpus" in machine
    assert record["python"] == platform.python_version()
    assert set(record["versions"]) == {"keras", "tensorflow", "jax", "torch", "numpy", "snakemake"}
    for package in ("keras", "numpy", "snakemake"):
        assert record["versions"][package] == importlib.metadata.version(package)
    for figure in record["figures"]:
        assert math.isfinite(figure["value"]) and figure["value"] > 0, figure
        assert figure["unit"], figure


@pytest.mark.slow
def test_evaluation_section_records_its_printed_seconds(tmp_path):
    arguments = ["evaluation", "--seeds", "2", "--images", "200", "--resamples", "50"]
    printed, record = run_benchmark(tmp_path, *arguments)
    assert_says_what_measured(record, "evaluation", arguments)
    # The section never loads Keras, so no backend measured anything.
    assert record["keras_backend"] is None
    seconds = re.findall(r"^  (metrics with CIs \(12 files\)|\+ model comparisons) *: +([\d.]+) s", printed, re.M)
    assert [(figure["unit"], format(figure["value"], ".1f")) for figure in record["figures"]] == [
        ("s", value) for _, value in seconds
    ]
    assert len(seconds) == 2


@pytest.mark.slow
def test_checkpoint_section_records_the_keras_backend_it_ran_on(tmp_path):
    arguments = ["checkpoint", "--size", "32", "--repeats", "2"]
    printed, record = run_benchmark(tmp_path, *arguments, KERAS_BACKEND="tensorflow")
    assert_says_what_measured(record, "checkpoint", arguments)
    assert record["keras_backend"] == "tensorflow"
    figures = {figure["name"]: figure for figure in record["figures"]}
    variables = re.search(r"(\d+) model and (\d+) optimizer variables", printed)
    assert (figures["model variables"]["value"], figures["optimizer variables"]["value"]) == tuple(
        map(float, variables.groups())
    )
    medians = re.findall(r"^  (.+?) *: median +([\d.]+) ms", printed, re.M)
    assert len(medians) == 2
    for name, milliseconds in medians:
        assert format(figures[name]["value"], ".1f") == milliseconds
        assert len(figures[name]["runs"]) == 2
    sizes = ast.literal_eval(re.search(r"both checkpoints on disk, MB: (\{.*\})", printed).group(1))
    assert {folder: figures[f"both checkpoints on disk, {folder}"]["value"] for folder in sizes} == sizes


def test_record_is_written_whole_under_its_section_and_start(tmp_path, monkeypatch):
    import benchmark

    monkeypatch.setattr(benchmark, "FIGURES", [])
    benchmark.record_figure("speed-up", 2, "x", contender="cache")
    started = datetime(2026, 12, 4, 21, 3, 55, tzinfo=UTC)
    git = {"commit": None, "modified": None, "error": "not asked"}
    path = benchmark.write_record(tmp_path, "cache", {"images": 8, "out": tmp_path}, started, git)
    # Nothing beside it: the temporary file it was written to is gone.
    assert os.listdir(tmp_path) == ["cache-20261204T210355Z.json"]
    record = json.loads(path.read_text())
    assert record["figures"] == [{"name": "speed-up", "value": 2.0, "unit": "x", "contender": "cache"}]
    assert record["options"] == {"images": 8, "out": str(tmp_path)}
    assert record["started_utc"] == "2026-12-04T21:03:55+00:00"
    assert record["git"] == git
