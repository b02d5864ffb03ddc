"""pyproject.toml declares what src/ imports, and nothing it does not."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Declared without an import of ours: a library we use imports it (say which in pyproject.toml).
USED_THROUGH_ANOTHER = {
    "python-multipart",  # starlette's form parsing
    "httptools",  # uvicorn's C parser, which serve runs (web/server.py)
    "uvloop",  # uvicorn's event loop for serve (web/server.py)
}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_distributions() -> dict[str, set[str]]:
    """The distribution of every third-party module src/ imports -> the files importing it."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "src" / "crusader_mail").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "crusader_mail":
                    continue
                for distribution in owners.get(top, [top]):
                    found.setdefault(_normal(distribution), set()).add(path.name)
    return found


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        _normal(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]) for line in project["dependencies"]
    }


def test_every_import_is_declared_and_every_declaration_imported() -> None:
    imported = _imported_distributions()
    declared = _declared()
    undeclared = {name: sorted(files) for name, files in imported.items() if name not in declared}
    assert undeclared == {}, "imported but not in [project] dependencies"
    unused = declared - set(imported) - USED_THROUGH_ANOTHER
    assert unused == set(), "declared but never imported"
    assert "python-dotenv" not in imported  # .env is read by pydantic-settings' own source
