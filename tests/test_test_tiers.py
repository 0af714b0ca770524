"""`make test-fast` (every test without one of conftest.SLOW_MARKERS) still unit-tests every package module.

Read from the test files (ast), so a marker added to the last fast test of a module fails here at once.
"""

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from code_imports import imported_modules, module_file
from conftest import REPO, SLOW_MARKERS, slow_processes_refused


def marker_names(expression: ast.expr) -> set[str]:
    """The X of every ``pytest.mark.X`` (called or not) in a decorator or a ``pytestmark`` value."""
    return {
        node.attr
        for node in ast.walk(expression)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
    }


def has_fast_test(path: Path) -> bool:
    """Whether the test file holds a test that the fast tier runs."""
    tree = ast.parse(path.read_text())
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        module_mark = any(isinstance(target, ast.Name) and target.id == "pytestmark" for target in targets)
        if module_mark and marker_names(statement.value) & SLOW_MARKERS:
            return False
    return any(
        isinstance(statement, ast.FunctionDef)
        and statement.name.startswith("test_")
        and not set().union(*map(marker_names, statement.decorator_list)) & SLOW_MARKERS
        for statement in tree.body
    )


def test_the_fast_tier_imports_every_package_module():
    package = {
        ".".join(path.relative_to(REPO / "scripts").with_suffix("").parts)
        for path in (REPO / "scripts/leukemia_dtl").rglob("*.py")
        if path.name != "__init__.py"
    }
    fast_files = [path for path in sorted((REPO / "tests").rglob("test_*.py")) if has_fast_test(path)]
    # The tests' shared helpers count for the fast files that import them; conftest.py for every test.
    helpers = {path.stem: path for path in (REPO / "tests").glob("*.py") if not path.name.startswith("test_")}
    imported = set(imported_modules(helpers["conftest"]))
    for path in fast_files:
        imported |= imported_modules(path)
        imported |= {
            module for name in imported_modules(path) & set(helpers) for module in imported_modules(helpers[name])
        }
    tested = {module for module in imported if module.startswith("leukemia_dtl.") and module_file(module) is not None}
    assert package - tested == set(), "no fast test imports these: add a unit test or drop a slow marker"


def test_a_slow_marker_takes_a_test_out_of_the_fast_tier(tmp_path):
    tests = tmp_path / "test_example.py"
    tests.write_text("import pytest\n\n@pytest.mark.slow\ndef test_a():\n    pass\n")
    assert not has_fast_test(tests)
    tests.write_text("import pytest\n\n@pytest.mark.slow\ndef test_a():\n    pass\n\ndef test_b():\n    pass\n")
    assert has_fast_test(tests)
    tests.write_text("import pytest\npytestmark = [pytest.mark.workflow]\n\ndef test_b():\n    pass\n")
    assert not has_fast_test(tests)


def test_make_test_fast_deselects_exactly_the_slow_markers():
    """The Makefile cannot import conftest: its marker expression is checked against SLOW_MARKERS here."""
    makefile = (REPO / "Makefile").read_text()
    (expression,) = re.findall(r'^\t\$\(PYTHON\) -m pytest .*-m "([^"]+)"', makefile.split("test-fast:")[1], re.M)[:1]
    assert set(re.findall(r"not (\w+)", expression)) == SLOW_MARKERS


class _Item:
    """What slow_processes_refused reads of a pytest item: its id and markers."""

    def __init__(self, *markers: str):
        self.nodeid = "tests/test_example.py::test_example"
        self.markers = [pytest.mark.__getattr__(name).mark for name in markers]

    def iter_markers(self):
        return iter(self.markers)


def test_an_unmarked_test_that_starts_snakemake_fails_naming_the_markers():
    # `true snakemake` is classified as Snakemake, and harmless where it does start.
    with slow_processes_refused(_Item()), pytest.raises(AssertionError, match=r"pytest\.mark\.workflow"):
        subprocess.Popen(["true", "snakemake"])


def test_the_guard_covers_a_module_fixture_that_starts_snakemake(tmp_path):
    """Module-scoped fixtures run inside the setup of their first test, before any function-scoped fixture: an
    unmarked test whose module fixture starts Snakemake fails too."""
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            import importlib.util
            spec = importlib.util.spec_from_file_location("project_conftest", {str(REPO / "tests" / "conftest.py")!r})
            project_conftest = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(project_conftest)
            pytest_runtest_setup = project_conftest.pytest_runtest_setup
            pytest_runtest_call = project_conftest.pytest_runtest_call
            """
        )
    )
    for marker in ("", "@pytest.mark.workflow"):
        (tmp_path / f"test_{'marked' if marker else 'unmarked'}.py").write_text(
            textwrap.dedent(
                f"""
                import subprocess
                import pytest

                @pytest.fixture(scope="module")
                def started():
                    subprocess.Popen(["true", "snakemake"]).wait()

                {marker}
                def test_using_it(started):
                    pass
                """
            )
        )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:randomly", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "scripts")])},
    )
    assert re.search(r"1 passed.* 1 error", result.stdout), result.stdout[-2000:]
    assert "test_unmarked.py::test_using_it starts Snakemake but carries none of the markers" in result.stdout
