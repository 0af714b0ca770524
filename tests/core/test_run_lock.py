"""The run lock's decisions on locks left by others (the live-process case runs for real in
tests/model/test_training.py)."""

import json

import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.run_lock import run_lock


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
