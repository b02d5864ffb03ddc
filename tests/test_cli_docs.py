"""Every command is documented: in its help, in docs/cli.md, and by name in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_docs import DOC, commands, render

README = Path(__file__).resolve().parent.parent / "README.md"


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
