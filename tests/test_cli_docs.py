"""Every command is documented: in its help, in docs/cli.md, and by name in the README."""

from __future__ import annotations

import importlib.util
import subprocess
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


@pytest.mark.parametrize("path", [[], ["subscribers", "import"], ["serve"]], ids=str)
def test_docs_show_what_the_real_command_prints(path: list[str], tmp_path: Path) -> None:
    """The block of ``crusader-mail ... -h`` in docs/cli.md is what the command prints in a
    pipe (80 columns): ``-h, --help`` included."""
    printed = subprocess.run(
        [str(REPO / ".venv" / "bin" / "crusader-mail"), *path, "-h"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    ).stdout
    title = " ".join(["crusader-mail", *path])
    block = DOC.read_text(encoding="utf-8").split(f"\n## `{title}`\n\n```text\n", 1)[1]
    assert block.split("\n```\n", 1)[0] == printed.rstrip()
    assert "  -h, --help " in printed


def test_no_command_documents_a_bare_help_option() -> None:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    assert not [line for line in lines if line.lstrip().startswith("--help")]
