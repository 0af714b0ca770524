"""The run lock's decisions on locks left by others (the live-process case runs for real in
tests/model/test_training.py), and the release of Snakemake's locks left by a killed Snakemake (the kill
itself runs for real in tests/test_faults_workflow.py)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.run_lock import SNAKEMAKE_LOCK_OWNER, release_locks_of_dead_snakemake, run_lock


def test_a_lock_held_on_another_host_stops_the_job_naming_it(tmp_path):
    lock = tmp_path / "seed0.lock"
    lock.write_text(json.dumps({"host": "gpu-node-17", "pid": 4242, "slurm_job_id": None, "since": "today"}))
    with (
        pytest.raises(UserError, match=r"being trained by process 4242 on gpu-node-17.*delete .*seed0\.lock"),
        run_lock(lock, "vgg19 seed 0"),
    ):
        pytest.fail("the block ran although another job holds the run")
    assert json.loads(lock.read_text())["pid"] == 4242


def test_this_slurm_jobs_own_lock_is_taken_over_after_a_requeue(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    lock = tmp_path / "seed0.lock"
    lock.write_text(json.dumps({"host": "gpu-node-17", "pid": 4242, "slurm_job_id": "777"}))
    with run_lock(lock, "vgg19 seed 0"):
        assert json.loads(lock.read_text())["slurm_job_id"] == "777"
        assert json.loads(lock.read_text())["pid"] != 4242
    assert not lock.exists()


def test_a_half_written_lock_is_taken_over(tmp_path):
    lock = tmp_path / "seed0.lock"
    lock.write_text('{"host": "gpu-no')
    with run_lock(lock, "vgg19 seed 0"):
        assert "pid" in json.loads(lock.read_text())
    assert not lock.exists()


def snakemake_dir_locked_by(tmp_path, pid: int) -> Path:
    """A .snakemake folder whose locks were taken by process ``pid`` on this host, as onstart records it."""
    snakemake_dir = tmp_path / ".snakemake"
    (snakemake_dir / "locks").mkdir(parents=True)
    (snakemake_dir / "locks" / "0.output.lock").write_text("results/data/inventory.tsv\n")
    (snakemake_dir / SNAKEMAKE_LOCK_OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    return snakemake_dir


def test_snakemake_locks_of_a_dead_process_are_released_and_a_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    released = snakemake_dir_locked_by(tmp_path / "dead", dead.pid)
    assert release_locks_of_dead_snakemake(released)
    assert not (released / "locks").exists()

    kept = snakemake_dir_locked_by(tmp_path / "alive", os.getpid())
    assert not release_locks_of_dead_snakemake(kept)
    assert (kept / "locks" / "0.output.lock").exists()


def test_snakemake_locks_newer_than_the_owner_record_are_kept(tmp_path):
    # Taken by a Snakemake that has not recorded itself yet: the record names its dead predecessor.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    snakemake_dir = snakemake_dir_locked_by(tmp_path, dead.pid)
    later = time.time() + 5
    os.utime(snakemake_dir / "locks" / "0.output.lock", (later, later))
    assert not release_locks_of_dead_snakemake(snakemake_dir)
    assert (snakemake_dir / "locks" / "0.output.lock").exists()


def test_snakemake_locks_recorded_on_another_host_are_kept(tmp_path):
    """A shared working directory seen from a second login node: the holder's process id means nothing here,
    so even one that matches no process on this host keeps its locks (the user runs --unlock once sure)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    snakemake_dir = snakemake_dir_locked_by(tmp_path, dead.pid)
    owner = snakemake_dir / SNAKEMAKE_LOCK_OWNER
    record = json.loads(owner.read_text())
    owner.write_text(json.dumps({**record, "host": f"{socket.gethostname()}-other-login-node"}))
    os.utime(snakemake_dir / "locks" / "0.output.lock", (time.time() - 5, time.time() - 5))
    assert not release_locks_of_dead_snakemake(snakemake_dir)
    assert (snakemake_dir / "locks" / "0.output.lock").exists()
