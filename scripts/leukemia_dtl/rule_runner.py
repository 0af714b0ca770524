"""Shared entry point of the rule scripts: logging to the rule's log and user-facing errors."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from leukemia_dtl.errors import UserError

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


def run_rule(snakemake, main: Callable[[], None]) -> None:
    """Run ``main`` with logging sent to the rule's log.

    A UserError ends the job with its message only; anything else is a bug, logged with its traceback.
    """
    configure_logging(snakemake.log[0] if snakemake.log else None)
    try:
        main()
    except UserError as error:
        log.error("%s", error)
        sys.exit(1)
    except Exception:
        log.exception("unexpected error")
        sys.exit(1)
