"""The entry point of every rule script: logging to the rule's log, the Keras cache, user-facing errors.

Each script under ``scripts/`` defines ``main(snakemake)`` and ends with ``run_rule(snakemake, main)``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

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
    """
    configure_logging(snakemake.log[0] if snakemake.log else None)
    keras_home = snakemake.params.get("keras_home")
    if keras_home:
        os.environ["KERAS_HOME"] = str(keras_home)
    if not gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        main(snakemake)
    except UserError as error:
        log.error("%s", error)
        sys.exit(1)
    except Exception:
        log.exception("unexpected error")
        sys.exit(1)
