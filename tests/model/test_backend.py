"""The GPU guard: a job given a GPU that Keras cannot see stops at once with what to do (this machine has
no GPU, so setting the variables Slurm and CUDA set makes it a job that was given one)."""

import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.model import backend

GPU_VARIABLES = ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES")


@pytest.fixture
def no_gpu_given(monkeypatch):
    assert backend.accelerator_name() is None, "these tests need a machine whose Keras sees no GPU"
    for name in GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "name, value", [("SLURM_GPUS_ON_NODE", "1"), ("SLURM_JOB_GPUS", "0"), ("CUDA_VISIBLE_DEVICES", "0,1")]
)
def test_a_given_but_invisible_gpu_stops_the_job(no_gpu_given, name, value):
    no_gpu_given.setenv(name, value)
    with pytest.raises(UserError) as error:
        backend.check_gpu("auto")
    message = str(error.value)
    assert f"was given a GPU ({name}={value})" in message
    for cause in ("tensorflow-cpu", "CUDA libraries", "NVIDIA driver", "tensorflow[and-cuda]", "require_gpu: false"):
        assert cause in message


@pytest.mark.parametrize(
    "name, value", [("CUDA_VISIBLE_DEVICES", ""), ("CUDA_VISIBLE_DEVICES", "-1"), ("SLURM_GPUS_ON_NODE", "0")]
)
def test_a_job_given_no_gpu_runs_on_the_cpu(no_gpu_given, name, value):
    no_gpu_given.setenv(name, value)
    backend.check_gpu("auto")


def test_true_demands_a_gpu_and_false_never_checks(no_gpu_given):
    with pytest.raises(UserError, match=r"must run on a GPU \(require_gpu: true\)"):
        backend.check_gpu("true")
    no_gpu_given.setenv("CUDA_VISIBLE_DEVICES", "0")
    backend.check_gpu("false")
    with pytest.raises(UserError, match="require_gpu must be one of"):
        backend.check_gpu("yes")
