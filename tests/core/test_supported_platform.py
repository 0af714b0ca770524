"""The install's first step: CPython 3.11-3.13 on x86_64 Linux, or one paragraph saying so before pip runs."""

import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO
from leukemia_dtl.core.supported_platform import unsupported_reason


@pytest.mark.parametrize("version", [(3, 11, 7), (3, 12, 3), (3, 13, 0)])
def test_the_pinned_pythons_on_x86_64_linux_pass(version):
    assert unsupported_reason(version, "Linux", "x86_64") is None


@pytest.mark.parametrize(
    ("version", "system", "machine", "named"),
    [
        ((3, 14, 0), "Linux", "x86_64", "this python3 is Python 3.14,"),
        ((3, 10, 12), "Linux", "x86_64", "this python3 is Python 3.10,"),
        ((3, 12, 3), "Darwin", "arm64", "this python3 is Darwin on arm64,"),
        ((3, 12, 3), "Linux", "aarch64", "this python3 is Linux on aarch64,"),
    ],
)
def test_anything_else_is_named_with_what_to_do(version, system, machine, named):
    reason = unsupported_reason(version, system, machine)
    assert named in reason
    assert "CPython 3.11, 3.12 or 3.13 on x86_64 Linux" in reason and "uv python install 3.12" in reason


def test_make_stops_with_the_paragraph_before_pip_on_python_3_14(tmp_path):
    """A newcomer's python3 reporting 3.14: ``make demo`` prints the paragraph and creates no venv."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_python = fake_bin / "python3"
    fake_python.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import runpy, sys
            sys.version_info = (3, 14, 0, "final", 0)
            sys.argv = sys.argv[1:]
            runpy.run_path(sys.argv[0], run_name="__main__")
            """
        )
    )
    fake_python.chmod(0o755)
    checkout = tmp_path / "checkout"
    for name in ("Makefile", "requirements.txt", "scripts/leukemia_dtl/core/supported_platform.py"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, checkout / name)

    done = subprocess.run(
        ["make", "demo", f"PYTHON3={fake_python}"], cwd=checkout, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "this python3 is Python 3.14," in done.stderr
    assert not (checkout / ".venv").exists()
