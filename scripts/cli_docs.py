"""Generates ``docs/cli.md`` from the commands' own help, so every command is documented.

Regenerate after changing a command: ``make docs`` (= ``python scripts/cli_docs.py``).
``tests/test_cli_docs.py`` fails when the file is out of date or a command has no help.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

from crusader_mail.cli import cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
HEADER = """# crusader-mail commands

Every command and option, as `crusader-mail COMMAND --help` prints them. This file is
generated: run `make docs` after changing a command (`tests/test_cli_docs.py` checks it).

Exit codes: 0 done, 1 failure, 2 configuration or usage error, 130 interrupted.
"""


def walk(
    command: click.Command, path: list[str], parent: click.Context | None = None
) -> Iterator[tuple[list[str], click.Command, click.Context]]:
    # the command's own context settings (the top level's "-h"), as the real CLI applies them:
    # click caches a command's help option once made, so a command invoked earlier in the
    # same process must read the same here
    settings = {"terminal_width": 100, "max_content_width": 100, **command.context_settings}
    ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, [*path, name], ctx)


def render() -> str:
    parts = [HEADER]
    for path, command, ctx in walk(cli, ["crusader-mail"]):
        title = " ".join(path)
        parts.append(f"\n## `{title}`\n\n```text\n{command.get_help(ctx).rstrip()}\n```\n")
    return "".join(parts)


def commands() -> list[tuple[str, click.Command]]:
    return [(" ".join(path), command) for path, command, _ in walk(cli, ["crusader-mail"])]


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC}")
