"""Shared test helpers: the repository paths and a small C-NMC-shaped dataset on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(*args: str, workdir: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the project's Snakefile; outputs go to ``workdir`` so the repository's results/ stay untouched."""
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile")]
    if workdir is not None:
        command += ["-d", str(workdir)]
    return subprocess.run(
        [*command, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """The demo archive extracted: returns the C-NMC_Leukemia root."""
    from leukemia_dtl.acquire import extract_archive
    from leukemia_dtl.demo_data import DemoSpec, write_demo_archive

    folder = tmp_path_factory.mktemp("demo")
    write_demo_archive(folder / "demo.zip", DemoSpec(images_per_subject=6, bmp_size=48, final_images=5))
    return extract_archive(folder / "demo.zip", folder / "extracted")


# The session-wide local Slurm cluster (tests/slurm/): started on first use, stopped by PID at the end.
from slurm.fixtures import slurm_cluster  # noqa: E402,F401
