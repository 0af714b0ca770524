"""The GPU guard: a job given a GPU that Keras cannot see stops at once with what to do (on a machine whose
Keras sees no GPU, setting the variables Slurm and CUDA set makes it a job that was given one; on a GPU
machine Keras is made to see none). Determinism under JAX: its XLA flag is set before JAX initialises, which
is the only time XLA reads it, or refused loudly."""

import json
import os
import textwrap

import pytest

from conftest import REPO
from keras_backends import backend_params, run_under_backend
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import CACHE_IMAGES_FILE, INDEX_FILE
from leukemia_dtl.model import backend
from training_runs import training_arguments

GPU_VARIABLES = ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES")


@pytest.fixture
def no_gpu_given(monkeypatch):
    """A job given no GPU on a node whose Keras sees none: on a CPU machine as it is, on a GPU machine with
    Keras's answer replaced, so that the guard's decisions are tested on both."""
    if backend.accelerator_name() is not None:
        monkeypatch.setattr(backend, "accelerator_name", lambda: None)
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


def test_a_gpu_that_keras_sees_passes_every_requirement(no_gpu_given):
    """The other side of the guard, on any machine: a node whose Keras sees the GPU it was given."""
    no_gpu_given.setattr(backend, "accelerator_name", lambda: "NVIDIA H200")
    no_gpu_given.setenv("CUDA_VISIBLE_DEVICES", "0")
    for require_gpu in ("auto", "true", "false"):
        backend.check_gpu(require_gpu)


@pytest.fixture
def jax_determinism(monkeypatch):
    """enable_determinism's JAX branch in this (TensorFlow) process, XLA_FLAGS restored afterwards; returns a
    function that makes JAX's backends look initialised or not."""
    from jax._src import xla_bridge

    monkeypatch.setattr(backend, "backend_name", lambda: "jax")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

    def backends_initialised(initialised: bool) -> None:
        monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: initialised)

    backends_initialised(False)
    return backends_initialised


def test_determinism_under_jax_adds_its_xla_flag_once_however_often_it_is_asked(jax_determinism):
    backend.enable_determinism()
    # train_model asks again after the rule script did and JAX initialised: the flag is there, nothing to do.
    jax_determinism(True)
    backend.enable_determinism()
    assert os.environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=1 {backend.DETERMINISTIC_XLA_FLAG}"


def test_determinism_under_jax_after_jax_initialised_is_refused_naming_the_cause(jax_determinism, monkeypatch):
    jax_determinism(True)
    with pytest.raises(RuntimeError) as refusal:
        backend.enable_determinism()
    message = str(refusal.value)
    for cause in ("before JAX initialises", "already initialised", "would be ignored", "XLA_FLAGS=--xla_gpu_det"):
        assert cause in message
    assert "xla_gpu_deterministic_ops" not in os.environ["XLA_FLAGS"]
    # A flag that the job's environment turned off again does not count as set.
    monkeypatch.setenv("XLA_FLAGS", f"{backend.DETERMINISTIC_XLA_FLAG} --xla_gpu_deterministic_ops=false")
    with pytest.raises(RuntimeError, match="already initialised"):
        backend.enable_determinism()


RULE_SCRIPT_CHILD = textwrap.dedent("""
    import json, os, runpy, sys
    from types import SimpleNamespace

    import keras
    from jax._src import xla_bridge
    from snakemake.iocontainers import Namedlist

    from leukemia_dtl.model import classifiers
    from model_stage_fixtures import TINY_BACKBONE

    classifiers.BACKBONES["tiny"] = TINY_BACKBONE
    rule_script, job = sys.argv[1], json.loads(sys.argv[2])
    assert not xla_bridge.backends_are_initialized(), "JAX initialised before the rule script ran"
    flags_at_initialisation = []
    xla_bridge.register_backend_initialization_hook(
        lambda _: flags_at_initialisation.append(os.environ.get("XLA_FLAGS", ""))
    )
    # What Snakemake hands a script: Namedlists of the rule's directives, as the global `snakemake`.
    snakemake = SimpleNamespace(
        **{directive: Namedlist(fromdict=entries) for directive, entries in job.items()}, log=Namedlist(), threads=1
    )
    runpy.run_path(rule_script, init_globals={"snakemake": snakemake})
    print(json.dumps({
        "backend": keras.backend.backend(),
        "flags_at_initialisation": flags_at_initialisation,
        "flags_at_end": os.environ.get("XLA_FLAGS", ""),
    }))
    """)


@pytest.mark.workflow
@pytest.mark.parametrize("keras_backend", backend_params("jax"))
def test_the_train_model_rule_sets_determinism_before_jax_initialises(tmp_path, dataset, no_gpu_given, keras_backend):
    """The rule script's own order, run for real: its GPU check and device description initialise JAX, and XLA
    must find the determinism flag then; a wrong order fails the job (enable_determinism refuses)."""
    arguments = training_arguments(tmp_path, dataset, epochs=1)
    no_gpu_given.delenv("XLA_FLAGS", raising=False)
    outputs = {name: arguments[f"{name}_path"] for name in ("model", "history", "stats")}
    job = {
        "input": {
            "split": arguments["split_path"],
            "cache_images": f"{arguments['cache_dir']}/{CACHE_IMAGES_FILE}",
            "cache_index": f"{arguments['cache_dir']}/{INDEX_FILE}",
        },
        "output": {**outputs, "provenance": str(tmp_path / "out" / "provenance.json")},
        "params": {
            "model_name": arguments["options"].model_name,
            "model_options": dict(arguments["options"].model_options),
            **{name: arguments[name] for name in ("augmentation", "image_size")},
            **{name: arguments[name] for name in ("seed", "backup_dir")},
            "precision": "float32",
            "deterministic": True,
        },
        "resources": {"require_gpu": "auto"},
    }
    rule_script = str(REPO / "scripts" / "train_model.py")
    report = run_under_backend(keras_backend, RULE_SCRIPT_CHILD, rule_script, json.dumps(job))
    assert report["flags_at_initialisation"], "the rule script never initialised JAX: the test tests nothing"
    for flags in report["flags_at_initialisation"]:
        assert backend.DETERMINISTIC_XLA_FLAG in flags.split(), f"JAX initialised with XLA_FLAGS={flags!r}"
    assert report["flags_at_end"].split().count(backend.DETERMINISTIC_XLA_FLAG) == 1
    assert json.loads((tmp_path / "out" / "train_stats.json").read_text())["keras_backend"] == "jax"
