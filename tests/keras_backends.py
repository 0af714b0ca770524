"""Running test code under another Keras backend: Keras fixes its backend when it is first imported, so the test
process (TensorFlow) runs the code in a child Python with ``KERAS_BACKEND`` set.

A backend's test is skipped, with the reason, where its package is not installed (PyTorch is not among the
pinned test packages: its Linux wheels from PyPI bring several GB of CUDA libraries).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

# Keras backend -> the package it needs.
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def importable(backend: str) -> bool:
    return importlib.util.find_spec(BACKEND_PACKAGES[backend]) is not None


def backend_params(*backends: str) -> list:
    """``pytest.param`` per backend (all three by default), each skipped with a reason where not installed."""
    return [
        pytest.param(
            backend,
            id=backend,
            marks=pytest.mark.skipif(not importable(backend), reason=f"{BACKEND_PACKAGES[backend]} is not installed"),
        )
        for backend in backends or BACKEND_PACKAGES
    ]


def run_under_backend(backend: str, code: str, *arguments: str, timeout: int = 600) -> dict:
    """Run ``code`` (Python source that prints one JSON object as its last line) with ``arguments`` in
    ``sys.argv[1:]`` under Keras's ``backend``; return that object. The package and the tests' helper modules
    are importable there."""
    environment = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join([str(REPO / "scripts"), str(REPO / "tests")]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    result = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"under {backend}:\n{result.stderr[-4000:]}"
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer.get("backend", backend) == backend, answer
    return answer
