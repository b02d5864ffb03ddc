"""`crusader-mail inbox process [PATH ...] [--imap] [--sync-suppressions] [--json]`.

Reads ``.eml`` files, mbox files and Maildir folders given as paths, and with ``--imap`` the
configured IMAP folder (each handled message moved or flagged afterwards).
``--sync-suppressions`` first pulls SendGrid's unsubscribes, bounces and spam reports into the
list (the inbox workflow runs both every 15 minutes). The replies are queued with the changes
and sent through SendGrid once the changes are stored, with any left over from before. Output:
a table and a line about the replies, or with ``--json`` exactly one object ``{"processed",
"actions": [{"message_id", "command", "result"}], "replies": {"sent", "failed", "waiting"}}``
(plus ``"suppressions"`` with ``--sync-suppressions``, and ``"expired"``: requests to join
never confirmed in 7 days, erased first); addresses are masked, and so are Message-IDs
(``<j•••@mail.example>``: their left part may be the sender's address).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import console as make_console
from crusader_mail.delivery.client import client_factory
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.inbox.process import InboxReport
from crusader_mail.pipeline import InboxRun, inbox_stage
from crusader_mail.util.masking import mask_message_ids


@click.group()
def inbox() -> None:
    """Subscribe and unsubscribe readers who write in."""


@inbox.command("process")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--imap", "use_imap", is_flag=True, help="Also read the configured IMAP folder.")
@click.option(
    "--sync-suppressions",
    is_flag=True,
    help="First pull SendGrid's unsubscribes, bounces and spam reports into the list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def process(
    app: AppContext,
    paths: tuple[Path, ...],
    use_imap: bool,
    sync_suppressions: bool,
    as_json: bool,
) -> None:
    """Handle every message in PATHS (.eml, mbox, Maildir) and/or the IMAP folder."""
    if not paths and not use_imap:
        raise click.UsageError("give PATHS to .eml/mbox/Maildir, or --imap")
    settings = app.settings
    mailer = make_mailer(settings, app.clock)
    factory = client_factory(settings) if sync_suppressions else None
    store = app.store()
    report = inbox_stage(
        store, settings, app.clock, mailer, list(paths), use_imap=use_imap, suppressions=factory
    )
    if as_json:
        click.echo(json.dumps(mask_message_ids(report.as_json()), ensure_ascii=False))
    else:
        _table(report)


def _table(report: InboxReport) -> None:
    console = make_console()
    if isinstance(report, InboxRun) and report.suppressions is not None:
        console.print(f"suppressions: {sum(report.suppressions.values())} synced from SendGrid")
    if report.expired:
        console.print(f"expired: {report.expired} request(s) to join never confirmed, erased")
    table = Table(title=f"Inbox: {report.processed} message(s)")
    table.add_column("where")
    table.add_column("command")
    table.add_column("result")
    for action in report.actions:
        table.add_row(action.origin, action.command, action.result)
    console.print(table)
    if report.replies is not None:
        console.print(report.replies.line(), highlight=False)
