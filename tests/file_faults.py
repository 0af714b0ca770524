"""Faults of files written by the workflow, injected for real: writes that stop short under a file size limit in a
fresh interpreter, and rows damaged on disk after a file was written.

A helper module, not a test module: tests import it instead of each other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import REPO


def start_python(code: str, file_size_limit: int | None = None) -> subprocess.Popen:
    """``code`` in a fresh interpreter that imports the package (and the tests' fixtures), optionally under
    a file size limit: with SIGXFSZ ignored, a write past it stops short and the next one fails (EFBIG),
    as on a full disk or quota."""
    if file_size_limit is not None:
        code = (
            "import resource, signal\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit}))\n" + code
        )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "scripts"), str(REPO / "tests")])}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def assert_failed_publishing_nothing(process: subprocess.Popen, target: Path, reason: str) -> None:
    """``process`` failed writing ``target`` for ``reason``, and left nothing in its folder."""
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output
    assert f"Writing {target} failed: {reason}" in output, output
    assert "Nothing was published" in output
    assert list(target.parent.iterdir()) == [], "a partial or unchecked file was left behind"


def zero_row(array_file: Path, row: int) -> None:
    """Overwrite one row of a ``.npy`` file with zeros, as a block lost by a disk or a copy would read."""
    array = np.load(array_file, mmap_mode="r")
    offset, row_bytes = array.offset, array[0].nbytes
    del array
    with open(array_file, "r+b") as handle:
        handle.seek(offset + row * row_bytes)
        handle.write(bytes(row_bytes))
