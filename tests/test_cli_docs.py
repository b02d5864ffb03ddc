"""Every command is documented: in its help, in docs/cli.md, and by name in the README."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def _generator() -> ModuleType:
    """``scripts/cli_docs.py``, the generator ``make docs`` runs."""
    spec = importlib.util.spec_from_file_location("cli_docs", REPO / "scripts" / "cli_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_docs = _generator()
DOC, commands, render = _docs.DOC, _docs.commands, _docs.render


def test_docs_cli_md_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run `make docs` and commit docs/cli.md"


@pytest.mark.parametrize(("name", "command"), commands(), ids=[name for name, _ in commands()])
def test_every_command_has_help(name: str, command: object) -> None:
    import click

    assert isinstance(command, click.Command)
    assert command.help, f"{name} has no help text"
    assert "not built yet" not in command.help.lower()


def test_readme_names_every_top_level_command() -> None:
    readme = README.read_text(encoding="utf-8")
    top = {name.split()[1] for name, _ in commands() if len(name.split()) == 2}
    missing = sorted(name for name in top if f"crusader-mail {name}" not in readme)
    assert not missing, f"README.md does not mention: {missing}"
