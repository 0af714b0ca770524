"""The entry point of every rule script: logging to the rule's log, the Keras cache, user-facing errors.

Each script under ``scripts/`` defines ``main(snakemake)`` and ends with ``run_rule(snakemake, main)``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from leukemia_dtl.core.errors import UserError

log = logging.getLogger("leukemia_dtl")


def configure_logging(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    # matplotlib's PDF font subsetting logs every glyph it keeps at INFO.
    logging.getLogger("fontTools").setLevel(logging.WARNING)


def run_rule(snakemake, main: Callable, *, gpu: bool = True) -> None:
    """Run ``main(snakemake)`` with logging sent to the rule's log.

    A rule with ``params.keras_home`` gets ``KERAS_HOME`` set first: Keras reads it once, when it is first
    imported, so the model-stage scripts import their Keras modules inside ``main``. ``gpu=False`` hides every
    GPU from the job (an empty ``CUDA_VISIBLE_DEVICES``, read by TensorFlow, JAX and PyTorch when they start), for
    model-stage rules without the ``gpu`` resource: on a workstation (``profiles/local``) they would otherwise
    share the GPU that the profile gives a training job alone.
    A UserError ends the job with its message only; anything else is a bug, logged with its traceback.
    Run by Snakemake (the script is the process's ``__main__``), the job's process then ends at once
    (:func:`end_job_process`); run in-process (a test's ``runpy``), a failure raises ``SystemExit(1)``.
    """
    configure_logging(snakemake.log[0] if snakemake.log else None)
    keras_home = snakemake.params.get("keras_home")
    if keras_home:
        os.environ["KERAS_HOME"] = str(keras_home)
    if not gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    status = 0
    try:
        main(snakemake)
    except UserError as error:
        log.error("%s", error)
        status = 1
    except Exception:
        log.exception("unexpected error")
        status = 1
    if main.__module__ == "__main__":
        end_job_process(status)
    if status:
        sys.exit(status)


def end_job_process(status: int) -> NoReturn:
    """End a rule's process with ``status`` once its outputs are written, without the interpreter's teardown.

    Tearing down a process that imported TensorFlow (over 4,000 modules) took 1.1-1.2 s of CPU on this project's
    2-core machine, a quarter of what importing it takes; 40 of the demo's jobs import it (the others, with pandas,
    SciPy and matplotlib, took 0.25 s each). When ``main`` has returned or failed, every output it wrote is closed,
    so only the log handlers and the standard streams are flushed here.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
