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

COMMANDS: dict[str, tuple[str, str, str]] = {
    "archive": (
        "archive",
        "archive",
        "The public archive of sent issues (archive_dir, published at newsletter.archive_url).",
    ),
    "config": ("config", "config", "Inspect the settings."),
    "db": ("db", "db", "The PostgreSQL store's schema (set CRUSADER_MAIL_DATABASE_URL)."),
    "fetch": ("fetch", "fetch", "Fetch every feed and add its posts to the archive."),
    "inbox": ("inbox", "inbox", "Subscribe and unsubscribe readers who write in."),
    "preview": (
        "preview",
        "preview",
        "Render the next issue to files (and serve it live) without changing any state.",
    ),
    "run": (
        "run",
        "run",
        "Sync suppressions, process the inbox, fetch the feeds, and send what is new.",
    ),
    "send": ("send", "send", "Send what is due to every active reader, each issue exactly once."),
    "serve": (
        "serve",
        "serve",
        "Serve the unsubscribe/confirm pages, Inbound Parse and the Event Webhook.",
    ),
    "snippet": (
        "snippet",
        "snippet",
        "Print an HTML form for the blog that subscribes a visitor (no script needed).",
    ),
    "subscribers": (
        "subscribers",
        "subscribers",
        "Manage the subscriber list (subscribers_dir/subscribers.csv).",
    ),
    "merge-driver": ("merge", "merge_driver", ""),  # hidden
}
"""The top-level commands: name -> (module in ``crusader_mail.cli``, attribute, the one-line
help ``--help`` lists without importing the command; a test holds it to the command's own)."""


class _Commands(click.Group):
    """The top-level commands, each imported when it is used: a command pays only for the
    libraries it needs (``subscribers add`` never loads the composer, ``run`` never loads
    psycopg without a database), and ``--help`` imports none of them. ``list_commands`` names every one, hidden ones included
    (click leaves those out of the help); ``get_command`` imports it. Walk the commands
    through these two, never through ``commands`` (only those imported so far)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module_name, attribute, _ = COMMANDS[cmd_name]
            module = importlib.import_module(f"crusader_mail.cli.{module_name}")
            self.add_command(getattr(module, attribute))
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, each command's line from :data:`COMMANDS` (whole,
        wrapped): no command is imported to list it."""
        rows = [
            (name, COMMANDS[name][2] if name in COMMANDS else command.get_short_help_str())
            for name, command in self.commands.items()
            if not command.hidden
        ]
        rows += [(name, summary) for name, (_, _, summary) in COMMANDS.items() if summary]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(dict(rows).items()))


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
