"""The command line: parses arguments, calls the library, maps errors to exit codes.

Only this package turns a :class:`~crusader_mail.errors.CrusaderMailError` into one line on
stderr and its ``exit_code``; nothing below it prints tracebacks for expected failures.
Exit codes: 0 done, 1 failure, 2 configuration or usage error, 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from crusader_mail import __version__
from crusader_mail.cli.context import AppContext
from crusader_mail.errors import CrusaderMailError

COMMANDS = {
    name: (name, name)
    for name in (
        "archive",
        "config",
        "db",
        "fetch",
        "inbox",
        "preview",
        "run",
        "send",
        "serve",
        "snippet",
        "subscribers",
    )
} | {"merge-driver": ("merge", "merge_driver")}
"""The top-level commands: name -> (module in ``crusader_mail.cli``, attribute)."""


class _Commands(click.Group):
    """The top-level commands, each imported when it is used: a command pays only for the
    libraries it needs (``subscribers add`` never loads the composer, ``run`` never loads
    psycopg without a database). ``list_commands`` names every one, hidden ones included
    (click leaves those out of the help); ``get_command`` imports it. Walk the commands
    through these two, never through ``commands`` (only those imported so far)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module_name, attribute = COMMANDS[cmd_name]
            module = importlib.import_module(f"crusader_mail.cli.{module_name}")
            self.add_command(getattr(module, attribute))
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CRUSADER_MAIL_CONFIG",
    help="Settings file (default: ./crusader-mail.toml).",
)
@click.version_option(__version__, prog_name="crusader-mail")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Turn a blog's feed into an email newsletter and deliver it through SendGrid."""
    app = ctx.ensure_object(AppContext)
    if config is not None:
        app.config = config


def main(argv: list[str] | None = None, obj: AppContext | None = None) -> None:
    """Console entry point: run the CLI and map library errors to exit codes."""
    try:
        # Outside standalone mode click catches a command's ``Exit(code)`` itself and RETURNS
        # the code (a command's own return value comes back the same way): an int is the code.
        code = cli.main(args=argv, prog_name="crusader-mail", standalone_mode=False, obj=obj)
    except CrusaderMailError as error:
        click.echo(f"crusader-mail: error: {error}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort as error:
        if isinstance(error.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("crusader-mail: interrupted", err=True)
            sys.exit(130)
        click.echo("crusader-mail: aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("crusader-mail: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
