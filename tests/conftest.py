"""Shared test helpers: the repository paths, Snakemake runs, and small datasets on disk.

Tests mirror the package: tests/core, tests/data, tests/model, tests/tuning and tests/evaluate hold the
unit tests of leukemia_dtl's subpackages; the files here test the workflow as a whole.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# The markers `make test-fast` deselects (pyproject.toml describes each).
SLOW_MARKERS = frozenset({"workflow", "slurm", "registry", "slow"})
TRAINING_CALLS = re.compile(r"\btrain_model\(|\.fit\(")
# Snakemake's options of `make demo` for a run of the whole demo: one thread per job, and its job rate limit's
# timer every 3 s instead of every second (the Makefile says why).
DEMO_SCHEDULING = ("--max-threads", "1", "--max-jobs-per-timespan", "100/3s")
# The test files that take longest (CI's --durations, 2026-12-05): the demo run with the tests on its results, and the
# Slurm cluster (mostly waiting on it). The other workers run the unit tests beside them, one core each, and the
# shorter workflow runs after those.
LONGEST_FILES = ("test_workflow.py", "test_slurm_cluster.py")


def run_snakemake(*args: str, workdir: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the project's Snakefile; outputs go to ``workdir`` so the repository's results/ stay untouched."""
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile")]
    if workdir is not None:
        command += ["-d", str(workdir)]
    return subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry-run as {rule: count}; empty when there is nothing to be done."""
    if "Job stats:" not in dry_run_output:
        return {}
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def slow_process(args) -> str | None:
    """What makes a subprocess slow enough to keep a test out of the fast tier: Snakemake, or a Python child
    that trains a model (its code given with -c or as a script file). None for anything else."""
    argv = shlex.split(args) if isinstance(args, str) else [os.fspath(arg) for arg in args]
    if any(re.search(r"\bsnakemake\b", arg) for arg in argv):
        return "Snakemake"
    code = ""
    if len(argv) > 2 and argv[1] == "-c":
        code = argv[2]
    elif len(argv) > 1 and argv[1].endswith(".py") and Path(argv[1]).is_file():
        code = Path(argv[1]).read_text()
    return "a training process" if TRAINING_CALLS.search(code) else None


def pytest_collection_modifyitems(items):
    """The files that take minutes first, longest first, then the rest in their usual order. `make test` runs
    files in parallel (pytest-xdist, one file per worker, in this order), so the longest start at once
    instead of after the short ones."""

    def running_time_rank(item):
        name = item.path.name
        return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=running_time_rank)


@contextlib.contextmanager
def slow_processes_refused(item):
    """A test that starts Snakemake or a training process, in its body or in a fixture it sets up, must carry one
    of SLOW_MARKERS, or `make test-fast` would run it: without one, starting such a process fails the test, in
    every tier."""
    if SLOW_MARKERS & {marker.name for marker in item.iter_markers()}:
        yield
        return
    start = subprocess.Popen.__init__

    def start_if_fast(process, args, *rest, **options):
        slow = slow_process(args)
        if slow:
            raise AssertionError(
                f"{item.nodeid} starts {slow} but carries none of the markers {sorted(SLOW_MARKERS)}: "
                "mark it (pytest.mark.workflow for Snakemake, pytest.mark.slow for training) so that "
                "make test-fast leaves it out"
            )
        start(process, args, *rest, **options)

    subprocess.Popen.__init__ = start_if_fast
    try:
        yield
    finally:
        subprocess.Popen.__init__ = start


# Hooks rather than an autouse fixture: module- and session-scoped fixtures are set up before any function-scoped
# one, inside the setup of the first test that uses them.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with slow_processes_refused(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with slow_processes_refused(item):
        return (yield)


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """The demo archive extracted: returns the C-NMC_Leukemia root."""
    from leukemia_dtl.data.archive import extract_archive
    from leukemia_dtl.data.demo_archive import DemoSpec, write_demo_archive

    folder = tmp_path_factory.mktemp("demo")
    write_demo_archive(folder / "demo.zip", DemoSpec(images_per_subject=6, bmp_size=48, final_images=5))
    return extract_archive(folder / "demo.zip", folder / "extracted")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small learnable image cache and split (model_stage_fixtures): (split path, cache folder)."""
    from model_stage_fixtures import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture
def tiny_backbone(monkeypatch):
    """Registers model_stage_fixtures.TINY_BACKBONE as the backbone "tiny" for one test."""
    from leukemia_dtl.model import classifiers
    from model_stage_fixtures import TINY_BACKBONE

    monkeypatch.setitem(classifiers.BACKBONES, "tiny", TINY_BACKBONE)


# The session-wide local Slurm cluster (tests/slurm/): started on first use, stopped by PID at the end.
from slurm.fixtures import slurm_cluster  # noqa: E402,F401
