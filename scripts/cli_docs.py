"""Generates ``docs/cli.md`` from the commands' own help, so every command is documented.

Each block is what ``crusader-mail COMMAND -h`` prints in a pipe or on a terminal at least 80
columns wide: the help is taken by running the command's own ``-h`` in this process (stdout
captured, ``COLUMNS=80``), never rebuilt beside it, so the file shows exactly what the CLI
prints. (Not click's ``CliRunner``: it forces 80-column help where the CLI wraps at 78.)

Regenerate after changing a command: ``make docs`` (= ``python scripts/cli_docs.py``).
``tests/test_cli_docs.py`` fails when the file is out of date or a command has no help.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import click

from crusader_mail.cli import cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
PROG = "crusader-mail"
COLUMNS = "80"  # click wraps help at min(terminal, 80) - 2 columns; a pipe counts as 80
HEADER = """# crusader-mail commands

Every command and option, as `crusader-mail COMMAND -h` prints them. This file is
generated: run `make docs` after changing a command (`tests/test_cli_docs.py` checks it).

Every command takes `--json`: one JSON object on stdout (addresses masked as in its text),
notes and warnings on stderr.

Exit codes: 0 done; 1 something failed (a feed, SendGrid, a state file, a template, an
import's bad rows: the one line on stderr says which); 2 a configuration or usage error (a bad
or missing setting, named with where it came from; an unknown option or a missing argument);
130 interrupted (Ctrl-C).
"""


def walk(
    command: click.Command, path: list[str], parent: click.Context | None = None
) -> Iterator[tuple[list[str], click.Command]]:
    """Every command that ``-h`` lists, depth first: (its path from ``crusader-mail``, it)."""
    ctx = click.Context(command, info_name=path[-1], parent=parent)
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, [*path, name], ctx)


def help_text(path: list[str]) -> str:
    """What ``crusader-mail ... -h`` prints for the command at ``path``."""
    shown = io.StringIO()
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = COLUMNS
    try:
        with redirect_stdout(shown):
            code = cli.main(args=[*path[1:], "-h"], prog_name=PROG, standalone_mode=False)
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    if code not in (0, None):
        raise SystemExit(f"{' '.join(path)} -h exited {code}")
    return shown.getvalue()


def render() -> str:
    parts = [HEADER]
    for path, _command in walk(cli, [PROG]):
        parts.append(f"\n## `{' '.join(path)}`\n\n```text\n{help_text(path).rstrip()}\n```\n")
    return "".join(parts)


def commands() -> list[tuple[str, click.Command]]:
    return [(" ".join(path), command) for path, command in walk(cli, [PROG])]


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC}")
