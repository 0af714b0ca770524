"""`make test-fast` (every test without one of conftest.SLOW_MARKERS) still unit-tests every package module.

Read from the test files (ast), so a marker added to the last fast test of a module fails here at once.
"""

import ast
import re
from pathlib import Path

from code_imports import imported_modules, module_file
from conftest import REPO, SLOW_MARKERS


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
    (expression,) = re.findall(r'^\t\$\(PYTHON\) -m pytest -m "([^"]+)"', makefile.split("test-fast:")[1], re.M)[:1]
    assert set(re.findall(r"not (\w+)", expression)) == SLOW_MARKERS
