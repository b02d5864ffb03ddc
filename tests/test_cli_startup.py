"""Start-up: ``crusader-mail --help`` lists every command without importing one (nor the
settings, pydantic, the composer or the stores), and the one-line help it shows for each is the
command's own."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from crusader_mail.cli import COMMANDS, cli
from tests.support.commands import REPO

HEAVY = (
    "crusader_mail.settings",
    "crusader_mail.pipeline",
    "crusader_mail.storage",
    "crusader_mail.compose",
    "crusader_mail.delivery",
    "pydantic",
    "pydantic_settings",
    "jinja2",
    "premailer",
    "feedparser",
    "numpy",
    "httpx",
    "psycopg",
    "sendgrid",
)

PROBE = """
import json, sys
from crusader_mail.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(*argv: str) -> tuple[str, set[str]]:
    """What ``crusader-mail ARGV`` prints, and every module it imported, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return done.stdout, set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [("--help",), ("--version",), ("-h",)])
def test_help_imports_no_command(argv: tuple[str, ...]) -> None:
    shown, modules = loaded_by(*argv)
    assert shown
    heavy = sorted(name for name in modules if name.startswith(HEAVY))
    assert heavy == []
    commands = {f"crusader_mail.cli.{module}" for module, _, _ in COMMANDS.values()}
    assert sorted(commands & modules) == []


def test_help_lists_every_visible_command() -> None:
    shown, _ = loaded_by("--help")
    listed = {
        line.split()[0]
        for line in shown.split("Commands:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    }
    visible = {name for name, (_, _, summary) in COMMANDS.items() if summary}
    assert listed == visible


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    summary = COMMANDS[name][2]
    if command.hidden:
        assert summary == ""
    else:
        assert summary == command.get_short_help_str(limit=1000)


def test_a_small_command_loads_no_composer() -> None:
    _, modules = loaded_by("subscribers", "--help")
    assert "crusader_mail.cli.subscribers" in modules
    assert not any(
        name.startswith(("premailer", "numpy", "feedparser", "crusader_mail.compose"))
        for name in modules
    )
