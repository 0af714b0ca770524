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
import logging
import re
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from leukemia_dtl.core.fileio import read_tsv

REPO = Path(__file__).resolve().parent.parent
GPU_RULES = (
    "train_model",
    "predict_model",
    "extract_features",
    "tune_model",
)
SNAKEMAKE_TIMEOUT = 100

SNAKEFILE = textwrap.dedent(
    r"""
    localrules: all, local_table

    rule all:
        input: "gpu_env.txt", "local_env.txt", "never.txt"

    # Named like the workflow's GPU rule, so the test overlay's set-resources apply to it; like it, it asks
    # for a GPU, and the profile's partitions.yaml sends it to the gpu partition.
    rule train_model:
        output: "gpu_env.txt"
        resources: gpu=1
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


def test_the_slurm_profile_leaves_partitions_to_the_partition_file():
    """No rule or resource names a partition: the plugin picks it per job from profiles/slurm/partitions.yaml,
    so overriding a GPU rule's resources cannot send it to a CPU partition (no cluster needed)."""
    slurm = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert slurm["rerun-incomplete"] is True
    assert slurm["slurm-partition-config"] == "partitions.yaml"
    partitions = yaml.safe_load((REPO / "profiles/slurm" / slurm["slurm-partition-config"]).read_text())["partitions"]
    assert any(limits.get("max_gpu", 0) > 0 for limits in partitions.values())
    assert any(limits.get("max_gpu", 0) == 0 for limits in partitions.values())
    for key in ("slurm_account", "runtime", "mem_mb", "cpus_per_task"):
        assert key in slurm["default-resources"], key
    overlay = yaml.safe_load((REPO / "tests/slurm/test_overlay/config.yaml").read_text())
    assert overlay["slurm-status-command"] == "squeue"
    for profile in (slurm, overlay):
        assert "slurm_partition" not in profile.get("default-resources", {})
        assert all("slurm_partition" not in res for res in profile.get("set-resources", {}).values())
    local = yaml.safe_load((REPO / "profiles/local/config.yaml").read_text())
    assert local["cores"] == "all"
    assert local["resources"] == {"gpu": 1}


def test_the_slurm_profile_submits_at_most_five_jobs_a_second():
    """The rate Snakemake takes from the profile, not what its YAML says: Snakemake 9 ignores the deprecated
    max-jobs-per-second (which the profile used to set) beside max-jobs-per-timespan, whose default is 100/1s."""
    from snakemake.cli import parse_args
    from snakemake.settings.types import SchedulingSettings

    _, args = parse_args(["--profile", str(REPO / "profiles/slurm")])
    settings = SchedulingSettings(
        max_jobs_per_second=args.max_jobs_per_second, max_jobs_per_timespan=args.max_jobs_per_timespan
    )
    assert (settings.max_jobs_per_timespan.max_jobs, settings.max_jobs_per_timespan.timespan) == (5, 1)


def dry_run_jobs(output: str) -> list[tuple[str, dict]]:
    """(rule, resources) of every job a dry-run would submit (local rules left out)."""
    jobs = []
    # Jobs of a group job are indented under it.
    for block in re.split(r"^ *rule ", output, flags=re.MULTILINE)[1:]:
        rule = block.split(":", 1)[0]
        line = re.search(r"^ +resources: (.*)$", block, re.MULTILINE)
        jobs.append((rule, dict(item.split("=", 1) for item in line[1].split(", "))))
    return jobs


def slurm_dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """A dry-run of the project's workflow with the real Slurm profile (no cluster needed) and ``args``."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n"]
    command += ["--profile", str(REPO / "profiles/slurm"), *args]
    return subprocess.run(command, cwd=workdir.parent, capture_output=True, text=True, timeout=300)


@pytest.mark.workflow
def test_a_site_overlay_cannot_send_gpu_jobs_to_a_cpu_partition(tmp_path):
    """A site overriding one GPU rule's resources, as a new user would (--profile profiles/slurm --profile
    my-site): every job of the paper study still gets the partition the plugin picks from partitions.yaml,
    GPU jobs one with GPUs, CPU jobs one without; the same for the --gres route."""
    from snakemake_executor_plugin_slurm import Executor
    from snakemake_executor_plugin_slurm.partitions import read_partition_file

    site = tmp_path / "my-site"
    site.mkdir()
    (site / "config.yaml").write_text(yaml.safe_dump({"set-resources": {"train_model": {"runtime": 1440}}}))
    # Test-time augmentation on, so that every GPU rule is planned (a YAML overlay: --config would pass a string).
    tta = tmp_path / "tta.yaml"
    tta.write_text(yaml.safe_dump({"evaluation": {"tta": True}}))
    partition_file = REPO / "profiles/slurm/partitions.yaml"
    limits = yaml.safe_load(partition_file.read_text())["partitions"]
    plugin = SimpleNamespace(
        _partitions=read_partition_file(partition_file), logger=logging.getLogger(), _fallback_partition=""
    )
    for gpu_request, asks_for_gpu in (("gpus", "gpu"), ("gres", "gres")):
        result = slurm_dry_run(
            tmp_path / gpu_request,
            "--profile",
            str(site),
            "--configfile",
            str(REPO / "config/config.yaml"),
            str(tta),
            "--config",
            "split={'schemes': ['random', 'patient']}",
            "hyperparameters=tuned",
            f"gpu_request={gpu_request}",
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        jobs = dry_run_jobs(result.stdout)
        assert {rule for rule, _ in jobs} >= {*GPU_RULES, "inventory", "build_image_cache", "compare_models"}
        for rule, resources in jobs:
            job = SimpleNamespace(name=rule, resources=resources, threads=1)
            partition = Executor.get_partition_arg(plugin, job).removeprefix(" -p ")
            asks = resources.get("gpu", "0") != "0" or "gpu" in resources.get("gres", "")
            assert (limits[partition].get("max_gpu", 0) > 0) == asks, (gpu_request, rule, partition, resources)
            # Every GPU rule asks for a GPU but the fast path's tuning jobs, which fit a head on features.
            assert asks == (rule in GPU_RULES and rule != "tune_model"), (rule, resources)
            if rule in GPU_RULES:
                # One GPU request, never both: the plugin would emit --gpus and --gres.
                assert [key for key in ("gpu", "gres") if key in resources] == [asks_for_gpu]
        assert dict(jobs)["train_model"]["runtime"] == "1440"
        # The paper grid for both schemes: 432 configurations in 8 submissions of the head_tuning group.
        assert [rule for rule, _ in jobs].count("tune_model") == 432
        assert result.stdout.count("Group job head_tuning") == 8

    # Tuning on images (augmentation on): every configuration is a GPU job of its own.
    (tmp_path / "images.yaml").write_text(yaml.safe_dump({"tuning": {"augmentation": True}}))
    result = slurm_dry_run(
        tmp_path / "images", "tune", "--configfile", str(REPO / "config/config.yaml"), str(tmp_path / "images.yaml")
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tuning = [resources for rule, resources in dry_run_jobs(result.stdout) if rule == "tune_model"]
    assert len(tuning) == 216 and all(resources["gpu"] == "1" for resources in tuning)
    assert "Group job" not in result.stdout


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
# Epochs of the time-limit test's training: more than its first attempt can train before Slurm ends a one-minute
# job, 60-90 s after its start (on the 2-core test machine 18-58 epochs, 26-38 s of it startup; a machine more than
# ~1.5x faster needs more), few enough that the retried attempt takes about two minutes there.
TIME_LIMIT_EPOCHS = 100


def run_demo(
    slurm_cluster, workdir: Path, *args: str, overlays: tuple[Path, ...] = (), **options
) -> subprocess.CompletedProcess:
    """The project's workflow on the demo config, narrowed by ``workdir/small.yaml`` and then ``overlays`` (config
    files: --config passes a nested value as a string), through the cluster."""
    configs = (REPO / "config/demo.yaml", workdir / "small.yaml", *overlays)
    demo = ("-s", str(REPO / "Snakefile"), "--configfile", *map(str, configs))
    return slurm_cluster.snakemake(*args[:1], *demo, *args[1:], cwd=workdir, **options)


@pytest.fixture(scope="module")
def demo_through_slurm(slurm_cluster, tmp_path_factory):
    """The project's own workflow on the demo data through Slurm, up to one training job."""
    workdir = tmp_path_factory.mktemp("slurm_demo")
    # hyperparameters: config keeps the demo's tuning out: one training job is the point here.
    small = {"split": {"schemes": ["random"]}, "models": {"vgg19": {"epochs": 1}}, "hyperparameters": "config"}
    (workdir / "small.yaml").write_text(yaml.safe_dump(small))
    res = run_demo(
        slurm_cluster,
        workdir,
        DEMO_TRAINING,
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
    provenance = json.loads((workdir / DEMO_TRAINING).with_name("provenance.json").read_text())
    assert provenance["slurm"]["SLURM_JOB_ID"] == stats["SLURM_JOB_ID"]
    job = slurm_cluster.run("scontrol", "show", "job", stats["SLURM_JOB_ID"]).stdout
    assert "TresPerJob=gres:gpu:1" in job, job
    # The demo archive is a local rule and never reached Slurm.
    assert "rule_build_image_cache" in res.stdout and "rule_generate_demo_archive" not in res.stdout
    assert "localrule generate_demo_archive" in res.stdout
    # Every job the plugin submitted went where partitions.yaml sends it: GPU rules to gpu, the rest to cpu.
    partitions = {}
    for job in slurm_cluster.run("scontrol", "show", "job").stdout.split("\n\n"):
        rule = re.search(r"Comment=rule_(\w+?)(?:_wildcards\S*)?\s", job)
        if rule:
            partitions.setdefault(rule[1], set()).add(re.search(r"Partition=(\S+)", job)[1])
    assert {"inventory", "split_dataset", "build_image_cache", "train_model"} <= set(partitions), partitions
    for rule, used in partitions.items():
        assert used == ({"gpu"} if rule in GPU_RULES else {"cpu"}), (rule, used)


@pytest.mark.slurm
@pytest.mark.workflow
def test_a_gpu_job_whose_keras_sees_no_gpu_stops_at_once(slurm_cluster, demo_through_slurm):
    """The fake GPU is a GPU to Slurm but not to Keras: with require_gpu: auto (the overlay's "false" taken
    back for this one job) the training job stops before its first epoch, saying why. It asks for its GPU
    the --gres way (config gpu_request: gres), which the partition file routes to the gpu partition too."""
    workdir, _ = demo_through_slurm
    target = DEMO_TRAINING.replace("seed0", "seed1")
    train = {"require_gpu": "auto", "cpus_per_task": 1, "mem_mb": 500, "runtime": 10}
    res = run_demo(
        slurm_cluster,
        workdir,
        target,
        "--config",
        "gpu_request=gres",
        "--set-resources",
        *(f"train_model:{key}={value}" for key, value in train.items()),
        timeout=240,
    )
    assert res.returncode != 0, res.stdout[-3000:]
    log = (workdir / "results/logs/train_model/random/vgg19/seed1.log").read_text()
    assert "was given a GPU (" in log, log
    assert "tensorflow[and-cuda]" in log and ": epoch " not in log
    assert not (workdir / target).exists()
    jobs = slurm_cluster.run("scontrol", "show", "job").stdout.split("\n\n")
    (job,) = [job for job in jobs if re.search(r"Comment=rule_train_model_wildcards_\S*_1\s", job)]
    assert "Partition=gpu" in job and "TresPerNode=gres" in job and "TresPerJob" not in job, job


def train_model_jobs(slurm_cluster, wildcards: str) -> list[dict[str, str]]:
    """Every train_model job of ``wildcards`` that Slurm still remembers (MinJobAge), oldest first, as
    ``scontrol show job``'s fields (the cluster has no accounting, so no sacct)."""
    jobs = []
    for text in slurm_cluster.run("scontrol", "show", "job").stdout.split("\n\n"):
        if re.search(rf"Comment=rule_train_model_wildcards_{wildcards}\s", text):
            jobs.append(dict(re.findall(r"(\w+)=(\S*)", text)))
    return sorted(jobs, key=lambda job: int(job["JobId"]))


@pytest.mark.slurm
@pytest.mark.workflow
def test_a_training_job_ended_by_its_time_limit_is_resubmitted_and_resumes(slurm_cluster, demo_through_slurm):
    """The README's Slurm guarantee with the real fault: Slurm ends a training job at its time limit (state
    TIMEOUT) in the middle of training; Snakemake resubmits it (--retries 1, the real profile's value) and the
    new Slurm job takes the dead job's run lock over and continues from the last epoch the first one finished,
    to a history with every epoch once.

    The first attempt asks for Slurm's shortest limit (runtime 1: --time=1, one minute) and trains
    TIME_LIMIT_EPOCHS epochs, more than it can before Slurm ends it; the retried one gets the overlay's 10
    minutes, as a site raises the runtime with the attempt. Slurm checks limits every 30 s (then SIGTERM, SIGKILL
    KillWait = 5 s later), so a one-minute job ends 60 to ~90 s after its start (61-87 s measured). With one minute
    for every attempt the outcome would depend on that: an attempt that finishes its last epoch a few seconds
    before it is ended after training removed its resume state but before Snakemake has its outputs, and the next
    attempt starts again at epoch 1 (seen here). So the test asserts outcomes (states, epochs, lock), not times."""
    workdir, _ = demo_through_slurm
    run = "results/models/random/efficientnetb3/seed0"
    overlay = workdir / "time_limit.yaml"
    overlay.write_text(yaml.safe_dump({"models": {"efficientnetb3": {"epochs": TIME_LIMIT_EPOCHS}}}))
    # A command-line --set-resources replaces the overlay's set-resources as a whole: its other values again.
    train = {"require_gpu": "false", "cpus_per_task": 1, "mem_mb": 500, "runtime": "1 if attempt == 1 else 10"}
    result = run_demo(
        slurm_cluster,
        workdir,
        f"{run}/train_stats.json",
        "--set-resources",
        *(f"train_model:{key}={value}" for key, value in train.items()),
        "--retries",
        "1",
        overlays=(overlay,),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]

    jobs = train_model_jobs(slurm_cluster, "random_efficientnetb3_0")
    # A first job that completed: this machine trains TIME_LIMIT_EPOCHS epochs within a minute, so raise it.
    assert [(job["JobState"], job["TimeLimit"]) for job in jobs] == [
        ("TIMEOUT", "00:01:00"),
        ("COMPLETED", "00:10:00"),
    ], jobs
    first, retried = (job["JobId"] for job in jobs)
    limit_seconds = (datetime.fromisoformat(jobs[0]["EndTime"]) - datetime.fromisoformat(jobs[0]["StartTime"])).seconds
    assert limit_seconds >= 60, jobs[0]
    assert f"SLURM-job '{first}' failed, SLURM status is: 'TIMEOUT'" in result.stdout, result.stdout[-4000:]
    # The first attempt's log: its Slurm job's (the rule's log file is rewritten by the retried attempt).
    slurm_logs = workdir / ".snakemake/slurm_logs/rule_train_model/random_efficientnetb3_0"
    first_log = (slurm_logs / f"{first}.log").read_text()
    assert f"JOB {first} ON localhost CANCELLED AT" in first_log and "DUE TO TIME LIMIT" in first_log, first_log
    first_epochs = [int(epoch) for epoch in re.findall(rf": epoch (\d+)/{TIME_LIMIT_EPOCHS} ", first_log)]
    assert first_epochs == list(range(1, len(first_epochs) + 1)) and first_epochs, first_log

    stats = json.loads((workdir / run / "train_stats.json").read_text())
    resumed = stats["resumed_from_epoch"]
    assert stats["SLURM_JOB_ID"] == retried and stats["epochs_run"] == TIME_LIMIT_EPOCHS - resumed, stats
    # Slurm may end the job between an epoch's log line and its checkpoint, either way round.
    assert resumed >= 1 and abs(resumed - len(first_epochs)) <= 1, (stats, first_epochs)
    history = read_tsv(workdir / run / "history.tsv")
    assert history["epoch"].tolist() == [str(epoch) for epoch in range(1, TIME_LIMIT_EPOCHS + 1)]
    retried_log = (workdir / "results/logs/train_model/random/efficientnetb3/seed0.log").read_text()
    assert "taking over the lock" in retried_log and f"Slurm job {first}" in retried_log, retried_log
    assert f"resuming after epoch {resumed}" in retried_log, retried_log


@pytest.mark.slurm
@pytest.mark.workflow
def test_the_grid_search_reaches_slurm_in_batches_without_gpus(slurm_cluster, demo_through_slurm):
    """The demo grid (2 models x 4 configurations on the random split) on the fast path: 8 tuning jobs in
    ceil(8 / 3) = 3 submissions with --group-components head_tuning=3, on the CPU partition; the two
    feature extractions stay GPU jobs."""
    workdir, _ = demo_through_slurm
    res = run_demo(
        slurm_cluster,
        workdir,
        "tune",
        "--group-components",
        "head_tuning=3",
        timeout=420,
    )
    assert res.returncode == 0, res.stdout[-4000:]
    assert len(list((workdir / "results/tuning/random").glob("*/*/*/*/*/validation.json"))) == 8
    jobs = slurm_cluster.run("scontrol", "show", "job").stdout.split("\n\n")
    batches = [job for job in jobs if "Comment=rule_head_tuning" in job]
    assert len(batches) == 3, batches
    for job in batches:
        assert "Partition=cpu" in job and "gres:gpu" not in job and "JobState=COMPLETED" in job, job
    assert not [job for job in jobs if "Comment=rule_tune_model" in job]
    extractions = [job for job in jobs if "Comment=rule_extract_features" in job]
    assert len(extractions) == 2 and all("Partition=gpu" in job for job in extractions)
