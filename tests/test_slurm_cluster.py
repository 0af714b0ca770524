"""Snakemake 9 + the Slurm executor plugin against a real local Slurm cluster.

Uses the session fixture ``slurm_cluster`` (tests/slurm/fixtures.py, imported by tests/conftest.py)
and a tiny self-contained Snakefile - not the project's workflow. The Snakemake run goes through
``--profile profiles/slurm --profile tests/slurm/test_overlay`` with a timeout.

One Snakemake run (``--keep-going``) holds all three cases - a GPU rule in Slurm, a localrule, a
rule that fails in Slurm - because every run costs a Slurm status-polling cycle (~20 s here), and
because a run whose last finished job failed waits one more polling interval before it exits.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
GPU_RULES = ("train_model", "predict_model", "extract_features", "tune_model")
SNAKEMAKE_TIMEOUT = 100

SNAKEFILE = textwrap.dedent(
    r"""
    localrules: all, local_table

    rule all:
        input: "gpu_env.txt", "local_env.txt", "never.txt"

    # Named like the workflow's GPU rule, so the profiles' set-resources apply to it.
    rule train_model:
        output: "gpu_env.txt"
        shell:
            "for v in SLURM_JOB_ID SLURM_JOB_PARTITION CUDA_VISIBLE_DEVICES SLURM_JOB_GPUS "
            "SLURM_STEP_GPUS SLURM_GPUS SLURM_GPUS_ON_NODE GPU_DEVICE_ORDINAL; do "
            "echo \"$v=$(printenv $v)\"; done > {output}"

    rule local_table:
        output: "local_env.txt"
        shell: "echo \"SLURM_JOB_ID=$(printenv SLURM_JOB_ID)\" > {output}"

    rule broken_step:
        output: "never.txt"
        shell: "echo 'deliberate failure' >&2; exit 3"
    """
)


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """Run the tiny workflow once through Slurm; returns (workdir, CompletedProcess, seconds)."""
    workdir = tmp_path_factory.mktemp("slurm_wf")
    (workdir / "Snakefile").write_text(SNAKEFILE)
    t0 = time.monotonic()
    res = slurm_cluster.snakemake("--keep-going", cwd=workdir, timeout=SNAKEMAKE_TIMEOUT)
    seconds = time.monotonic() - t0
    print(f"\nsnakemake through Slurm: {seconds:.1f} s, rc={res.returncode}")
    return workdir, res, seconds


def test_profiles_declare_gpu_rules():
    """The real Slurm profile sends the GPU rules to a GPU partition with one GPU (no cluster needed)."""
    slurm = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert slurm["rerun-incomplete"] is True
    for key in ("slurm_account", "slurm_partition", "runtime", "mem_mb", "cpus_per_task"):
        assert key in slurm["default-resources"], key
    for rule in GPU_RULES:
        res = slurm["set-resources"][rule]
        assert res.get("gpu") == 1 or "gpu" in str(res.get("gres", "")), rule
        for key in ("slurm_partition", "cpus_per_task", "mem_mb", "runtime"):
            assert key in res, (rule, key)
    local = yaml.safe_load((REPO / "profiles/local/config.yaml").read_text())
    assert local["cores"] == "all"
    assert local["resources"] == {"gpu": 1}
    overlay = yaml.safe_load((REPO / "tests/slurm/test_overlay/config.yaml").read_text())
    assert overlay["slurm-status-command"] == "squeue"
    assert set(overlay["set-resources"]) == set(slurm["set-resources"])
    for rule in GPU_RULES:
        assert overlay["set-resources"][rule]["gpu"] == slurm["set-resources"][rule]["gpu"]


@pytest.mark.slurm
@pytest.mark.workflow
def test_cluster_is_up(slurm_cluster):
    out = slurm_cluster.run("sinfo", "-h", "-o", "%P %a %t %G").stdout.splitlines()
    parts = {line.split()[0]: line.split()[1:] for line in out if line.strip()}
    assert parts["cpu*"][:2] == ["up", "idle"]  # `*`: the default partition
    assert parts["gpu"][:2] == ["up", "idle"]
    assert "gpu:1" in parts["gpu"][2]


@pytest.mark.slurm
@pytest.mark.workflow
def test_gpu_rule_runs_in_slurm_on_gpu_partition(slurm_cluster, slurm_run):
    workdir, res, _ = slurm_run
    gpu = _env_file(workdir / "gpu_env.txt")
    assert gpu["SLURM_JOB_ID"].isdigit(), gpu
    assert gpu["SLURM_JOB_PARTITION"] == "gpu", gpu
    # --gpus=1 on the fake GPU (gres.conf File=/dev/null): Slurm still exports the device index
    # to the step that Snakemake's jobstep plugin starts with `srun --gpus=1`.
    assert gpu["CUDA_VISIBLE_DEVICES"] == "0", gpu
    assert gpu["SLURM_STEP_GPUS"] == "0", gpu
    assert gpu["SLURM_GPUS_ON_NODE"] == "1", gpu

    job = slurm_cluster.run("scontrol", "show", "job", gpu["SLURM_JOB_ID"]).stdout
    assert "JobState=COMPLETED" in job, job
    assert "Partition=gpu" in job, job
    assert "TresPerJob=gres:gpu:1" in job, job  # what `sbatch --gpus=1` asked for
    assert "rule_train_model" in res.stdout  # its Slurm log dir: it was submitted by the plugin


@pytest.mark.slurm
@pytest.mark.workflow
def test_localrule_does_not_go_through_slurm(slurm_run):
    workdir, res, _ = slurm_run
    local = _env_file(workdir / "local_env.txt")
    assert local["SLURM_JOB_ID"] == "", "localrule went through Slurm"
    assert "rule_local_table" not in res.stdout  # no Slurm log dir / job comment for it


@pytest.mark.slurm
@pytest.mark.workflow
def test_failing_slurm_job_fails_the_run(slurm_run):
    workdir, res, seconds = slurm_run
    assert res.returncode != 0, res.stdout
    assert "Error in rule broken_step" in res.stdout, res.stdout
    assert "SLURM status is: 'FAILED'" in res.stdout, res.stdout
    assert not (workdir / "never.txt").exists()
    assert seconds < SNAKEMAKE_TIMEOUT


DEMO_TRAINING = "results/models/random/vgg19/seed0/train_stats.json"


@pytest.fixture(scope="module")
def demo_through_slurm(slurm_cluster, tmp_path_factory):
    """The project's own workflow on the demo data through Slurm, up to one training job."""
    workdir = tmp_path_factory.mktemp("slurm_demo")
    # hyperparameters: config keeps the demo's tuning out: one training job is the point here.
    small = {"split": {"schemes": ["random"]}, "models": {"vgg19": {"epochs": 1}}, "hyperparameters": "config"}
    (workdir / "small.yaml").write_text(yaml.safe_dump(small))
    res = slurm_cluster.snakemake(
        DEMO_TRAINING,
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config/demo.yaml"),
        str(workdir / "small.yaml"),
        cwd=workdir,
        timeout=420,
    )
    assert res.returncode == 0, res.stdout[-4000:]
    return workdir, res


@pytest.mark.slurm
@pytest.mark.workflow
def test_demo_training_job_ran_in_slurm_with_a_gpu(slurm_cluster, demo_through_slurm):
    workdir, res = demo_through_slurm

    stats = json.loads((workdir / DEMO_TRAINING).read_text())
    assert stats["SLURM_JOB_ID"].isdigit() and stats["SLURM_JOB_PARTITION"] == "gpu"
    assert stats["CUDA_VISIBLE_DEVICES"] == "0"
    job = slurm_cluster.run("scontrol", "show", "job", stats["SLURM_JOB_ID"]).stdout
    assert "TresPerJob=gres:gpu:1" in job, job
    # CPU stages went to the default partition; the demo archive is a local rule and never reached Slurm.
    assert "rule_build_image_cache" in res.stdout and "rule_generate_demo_archive" not in res.stdout
    assert "localrule generate_demo_archive" in res.stdout


@pytest.mark.slurm
@pytest.mark.workflow
def test_a_gpu_job_whose_keras_sees_no_gpu_stops_at_once(slurm_cluster, demo_through_slurm):
    """The fake GPU is a GPU to Slurm but not to Keras: with require_gpu: auto (the overlay's "false" taken
    back for this one job) the training job stops before its first epoch, saying why."""
    workdir, _ = demo_through_slurm
    target = DEMO_TRAINING.replace("seed0", "seed1")
    train = {"slurm_partition": "gpu", "gpu": 1, "cpus_per_task": 1, "mem_mb": 500, "runtime": 10}
    res = slurm_cluster.snakemake(
        target,
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config/demo.yaml"),
        str(workdir / "small.yaml"),
        "--set-resources",
        *(f"train_model:{key}={value}" for key, value in {**train, "require_gpu": "auto"}.items()),
        cwd=workdir,
        timeout=240,
    )
    assert res.returncode != 0, res.stdout[-3000:]
    log = (workdir / "results/logs/train_model/random/vgg19/seed1.log").read_text()
    assert "was given a GPU (SLURM_GPUS_ON_NODE=1)" in log, log
    assert "tensorflow[and-cuda]" in log and ": epoch " not in log
    assert not (workdir / target).exists()
