"""Every snakemake command that the README, the docs, the configs and the profiles tell a user to type runs
as written, from the root of a fresh copy of the repository: as a dry-run (a real run would download the
C-NMC archive), and with what Snakemake demands before it plans anything (cores, unless a profile or
executor says how jobs run). The cluster routes run too: `--sdm conda` with a stand-in `conda` (the dry-run then
checks each rule's environment file), the GPU venv's `snakemake` with this test run's venv standing in for it."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.workflow

DOCUMENTS = ["README.md", "config/README.md", "docs", "config", "profiles", "Snakefile"]
COMMAND = re.compile(r"^(?:KERAS_BACKEND=\w+ +)?(?:\.venv(?:-gpu)?/bin/)?snakemake\b")
# Commands the test cannot run here, and where they are covered instead.
NOT_RUN = {
    "--report": "needs a finished run; tests/test_workflow.py::test_demo_report_builds runs it on the demo",
}
# This machine has no conda: a stand-in answers what Snakemake asks of it before planning (its version, its
# channel priority, its info), so a dry-run of the --sdm conda route checks the rules' environment files and the
# DAG. The packages in those files are resolved by tests/test_environments.py.
STUB_CONDA = """#!/bin/sh
case "$*" in
  --version) echo "conda 24.11.3" ;;
  "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}, "success": true}' ;;
  "info --json") echo '{"conda_prefix": "/opt/conda", "envs_dirs": ["/opt/conda/envs"], "platform": "linux-64"}' ;;
  *) echo "stub conda cannot $*" >&2; exit 1 ;;
esac
"""
ENVIRONMENT_FILES = ["envs/data.yaml", "envs/train.yaml", "envs/evaluate.yaml"]
# What lets Snakemake start without --cores: a profile, a dry-run, or a command that runs no job.
NO_CORES_NEEDED = re.compile(r"(--cores|-c \w|--profile|-n\b|--dry-run|--lint|--rulegraph|--report|--unlock)")


def documented_commands() -> dict[str, list[str]]:
    """Every snakemake command in code spans, code blocks and indented comment lines, with the files that give
    it: a command that several documents repeat is run once."""
    files = []
    for name in DOCUMENTS:
        path = REPO / name
        files += sorted(f for f in path.rglob("*") if f.suffix in {".md", ".yaml"}) if path.is_dir() else [path]
    commands: dict[str, list[str]] = {}
    for path in files:
        text = path.read_text()
        candidates = re.findall(r"`([^`\n]+)`", text)
        candidates += [line.strip() for line in re.findall(r"^(?:#\s+)?(\S.*)$", text, re.MULTILINE)]
        for candidate in candidates:
            command = candidate.split("  #")[0].split(" # ")[0].strip()
            document = str(path.relative_to(REPO))
            if COMMAND.match(command) and document not in commands.get(command, []):
                commands.setdefault(command, []).append(document)
    return dict(sorted(commands.items()))


COMMANDS = documented_commands()


def test_the_documents_hold_the_commands_users_need():
    cluster_routes = {"snakemake --profile profiles/slurm", ".venv/bin/snakemake --profile profiles/slurm --sdm conda"}
    assert cluster_routes <= set(COMMANDS)
    assert any(command.startswith("snakemake tune") for command in COMMANDS)
    assert len(COMMANDS) >= 12


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """The tracked files, as a fresh clone has them, with this test run's .venv and an empty HOME."""
    root = tmp_path_factory.mktemp("checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / ".venv").symlink_to(Path(sys.executable).parent.parent, target_is_directory=True)
    # The GPU route's venv holds the same pins with TensorFlow's CUDA build (tests/test_environments.py): for a
    # dry-run, this test run's venv stands in for it.
    (root / ".venv-gpu").symlink_to(Path(sys.executable).parent.parent, target_is_directory=True)
    (root / "stub-bin").mkdir()
    (root / "stub-bin" / "conda").write_text(STUB_CONDA)
    (root / "stub-bin" / "conda").chmod(0o755)
    home = tmp_path_factory.mktemp("home")
    # README: link the profile to call it by its short name.
    link = 'mkdir -p ~/.config/snakemake && ln -s "$PWD/profiles/slurm" ~/.config/snakemake/slurm'
    assert link in (REPO / "README.md").read_text().replace("\n", " ")
    subprocess.run(["bash", "-c", link], cwd=root, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, check=True)
    # profiles/slurm/config.yaml: a site's own profile, a complete default-resources and per-rule changes.
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    site = {
        "default-resources": {**profile["default-resources"], "slurm_account": "abc"},
        "set-resources": {"train_model": {"runtime": 1440}},
    }
    (root / "my-site").mkdir()
    (root / "my-site" / "config.yaml").write_text(yaml.safe_dump(site))
    return root, home


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_runs_as_written(checkout, command):
    document = ", ".join(COMMANDS[command])
    skipped = [reason for marker, reason in NOT_RUN.items() if marker in command]
    if skipped:
        pytest.skip(skipped[0])
    assert NO_CORES_NEEDED.search(command), f"{document}: `{command}` stops with 'cores have to be specified'"
    root, home = checkout
    environment = {"HOME": str(home), "PATH": f"{root / 'stub-bin'}:{Path(sys.executable).parent}:/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", "-c", f"{command} -n"], cwd=root, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{document}: `{command}`\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    if "--sdm conda" in command:
        planned = result.stdout + result.stderr
        assert all(f"Conda environment {env} will be created" in planned for env in ENVIRONMENT_FILES), planned[-2000:]
