"""What a piece of the project's Python code imports, found by reading it (ast), not by running it."""

import ast
import sys
from pathlib import Path

from conftest import REPO


def module_file(module: str) -> Path | None:
    """The file of a leukemia_dtl module or package; None for a name inside a module."""
    path = REPO / "scripts" / Path(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the code, and every `python -m X` it runs."""
    modules = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.List):
            words = [item.value for item in node.elts if isinstance(item, ast.Constant)]
            modules.update(words[i + 1] for i, word in enumerate(words[:-1]) if word == "-m")
    return modules


def third_party_imports(script: Path) -> set[str]:
    """Top-level names of the non-standard modules that a script and the package code it reaches import."""
    seen, todo, external = set(), [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == "leukemia_dtl":
                parts = module.split(".")
                # The module and the packages above it, whose __init__ runs on import.
                todo += [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))]
            elif top not in sys.stdlib_module_names:
                external.add(top)
    return external
