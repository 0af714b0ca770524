"""Whether the pinned packages can install on this interpreter and machine, asked before pip is.

The pins (``requirements.txt``) have wheels for CPython 3.11-3.13 on x86_64 Linux only (``tensorflow-cpu``,
``jaxlib`` and ``onnxruntime`` decide it). Elsewhere pip fails deep in its resolver with an error that names
none of that, so ``make`` runs this file first with the machine's ``python3``: standard library only, and
syntax any Python from 3.6 can parse.
"""

import platform
import sys

SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))
SUPPORTED_MACHINES = ("x86_64", "amd64")


def unsupported_reason(version, system, machine):
    """None where the pins install; otherwise one paragraph saying what is unsupported and what to do.
    ``version``: (major, minor, ...) as ``sys.version_info``; ``system`` and ``machine`` as ``platform``'s."""
    problems = []
    if tuple(version[:2]) not in SUPPORTED_PYTHONS:
        problems.append(f"Python {version[0]}.{version[1]}")
    if system != "Linux" or machine.lower() not in SUPPORTED_MACHINES:
        problems.append(f"{system} on {machine}")
    if not problems:
        return None
    return (
        "This workflow's pinned packages (requirements.txt: TensorFlow 2.21, JAX 0.10, ONNX Runtime 1.32) "
        "install only with CPython 3.11, 3.12 or 3.13 on x86_64 Linux, and this python3 is {found}, where pip "
        "would stop with a resolver error. Run the workflow on an x86_64 Linux machine (a cluster login node, a "
        "container or a VM) with one of those Python versions: get one with `uv python install 3.12` or "
        "`pyenv install 3.12`, then `make PYTHON3=/path/to/python3.12 demo`. On Debian or Ubuntu, "
        "`python3 -m venv` also needs the python3-venv package.".format(found=", ".join(problems))
    )


if __name__ == "__main__":
    reason = unsupported_reason(sys.version_info, platform.system(), platform.machine())
    if reason:
        sys.exit(reason)
