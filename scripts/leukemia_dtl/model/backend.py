"""What the model code leaves to the backend: device, threads, precision, determinism, memory peaks.

Model code stays backend-neutral; the few questions only the backend can answer are asked here, one
branch per Keras backend (tensorflow, jax, torch), imported only when that backend is the active one.
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import sys

import keras

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import GPU_REQUIREMENTS, PRECISIONS

log = logging.getLogger("leukemia_dtl")


def backend_name() -> str:
    return keras.backend.backend()


def accelerator_name() -> str | None:
    """Name of the first GPU the backend will use, or None on CPU."""
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name) if gpus else None
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return device.device_kind if device.platform == "gpu" else None
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description() -> str:
    """The device training or inference runs on, for the stats files."""
    return accelerator_name() or f"CPU: {cpu_name()} ({len(os.sched_getaffinity(0))} cores usable)"


def gpus_given() -> str | None:
    """The variable by which Slurm or CUDA says this job was given GPUs (e.g. "SLURM_GPUS_ON_NODE=1"), or None."""
    for name in ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(name, "").strip()
        # No GPU: unset, empty, a count of 0, or CUDA's "-1" / Slurm's "NoDevFiles".
        if value and value not in ("-1", "NoDevFiles") and not (name == "SLURM_GPUS_ON_NODE" and value == "0"):
            return f"{name}={value}"
    return None


def check_gpu(require_gpu: str) -> None:
    """Stop a GPU job that would run on the CPU: with "auto" if the job was given a GPU that the Keras
    backend cannot see, with "true" whenever the backend sees no GPU; "false" never stops."""
    if require_gpu not in GPU_REQUIREMENTS:
        raise UserError(f"require_gpu must be one of {list(GPU_REQUIREMENTS)}, not {require_gpu!r}. Fix the config.")
    given = gpus_given()
    if require_gpu == "false" or (require_gpu == "auto" and given is None) or accelerator_name() is not None:
        return
    situation = f"was given a GPU ({given})" if given else "must run on a GPU (require_gpu: true)"
    raise UserError(
        f"This job {situation}, but Keras's {backend_name()} backend sees no GPU, so it would run on the CPU, "
        "many times slower. Likely causes: a CPU-only TensorFlow (the tensorflow-cpu wheel that `make` "
        "installs into .venv, or tensorflow without its CUDA libraries), CUDA libraries missing from the "
        "job's environment, or no NVIDIA driver on the node (run nvidia-smi in a job). Fix: install "
        "tensorflow[and-cuda] of the pinned version in the environment the jobs use (or run Keras on JAX or "
        "PyTorch with CUDA, KERAS_BACKEND), or set require_gpu: false to run on the CPU on purpose."
    )


def limit_cpu_threads(threads: int) -> None:
    """Keep the backend to the cores Snakemake gave the job; call before the backend runs any op."""
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        # XLA sizes its CPU pool when JAX starts; only the affinity mask (Slurm's cpus-per-task) limits it.
        log.info("JAX backend: CPU threads follow the process's CPU affinity, not the rule's threads")


# XLA reads XLA_FLAGS once, when JAX initialises its backends (at jax.devices() or the first computation);
# a flag added later is ignored without a word.
DETERMINISTIC_XLA_FLAG = "--xla_gpu_deterministic_ops=true"


def xla_flags_deterministic() -> bool:
    """Whether XLA_FLAGS asks for deterministic GPU kernels (the last setting of the flag counts, as in XLA)."""
    flag_name = DETERMINISTIC_XLA_FLAG.split("=")[0]
    settings = [flag for flag in os.environ.get("XLA_FLAGS", "").split() if flag.split("=")[0] == flag_name]
    return bool(settings) and settings[-1] == DETERMINISTIC_XLA_FLAG


def enable_determinism() -> None:
    """Deterministic kernels where the backend offers them (slower; some GPU ops then raise).

    Call it before anything runs the backend: under JAX it must come before JAX initialises (check_gpu,
    device_description and accelerator_name may), else it raises rather than leave the run silently
    non-deterministic. Calling it again is harmless.
    """
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        os.environ["TF_DETERMINISTIC_OPS"] = "1"
        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        # cuBLAS needs a fixed workspace for reproducible matrix products.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    elif backend == "jax":
        # Private (jax._src), but the only way to ask without initialising them; in the venv's jax 0.10.2 and older.
        from jax._src.xla_bridge import backends_are_initialized

        if xla_flags_deterministic():
            # Already there, from the job's environment or an earlier call: both came before JAX initialised.
            return
        if backends_are_initialized():
            raise RuntimeError(
                f"deterministic: true under JAX needs {DETERMINISTIC_XLA_FLAG} in XLA_FLAGS before JAX initialises "
                "its backends, since XLA reads XLA_FLAGS only then; but something already initialised them "
                "(jax.devices(), check_gpu, device_description or a first computation), so the flag would be "
                "ignored and GPU training would not be deterministic. Call enable_determinism() before anything "
                f"that runs JAX, or start the process with XLA_FLAGS={DETERMINISTIC_XLA_FLAG}."
            )
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {DETERMINISTIC_XLA_FLAG}".strip()


def set_precision(precision: str) -> str:
    """Set the global dtype policy and return it: mixed_float16 only for ``mixed`` on a GPU (``precision`` is
    one of PRECISIONS: the config schema's enum)."""
    policy = PRECISIONS[precision]
    if policy == "mixed_float16" and accelerator_name() is None:
        log.warning("precision: mixed needs a GPU; none is visible, so this run uses float32")
        policy = "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def peak_host_memory_mb() -> float:
    """Peak resident memory of this process so far (memory-mapped cache pages it touched included)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def peak_accelerator_memory_mb() -> float | None:
    """Peak memory the backend allocated on the first GPU, or None without one."""
    if accelerator_name() is None:
        return None
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return None


def slurm_context() -> dict[str, str | None]:
    """Where a Slurm job ran: job id, partition and the GPUs it was given (None outside Slurm)."""
    return {name: os.environ.get(name) for name in ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "CUDA_VISIBLE_DEVICES")}
