"""``crusader-mail subscribers``: add, remove, list, import, export, stats, tidy.

Contract: a thin layer over the store's roster (:func:`crusader_mail.storage.open_store`) and
:mod:`crusader_mail.subscriptions.imports`. ``add``, ``remove`` and ``import`` print addresses
masked (their output lands in logs); ``list`` and ``export`` print them whole, because there
the user asked for the list itself. Failures are raised as
:class:`~crusader_mail.errors.SubscriberError` subclasses; ``cli.main`` prints their one line.
``add``, ``remove`` and ``import`` end by sending the replies waiting in the store
(:func:`crusader_mail.subscriptions.outbox.send_queued`), when there are any.

Moving between stores: ``export --out FILE`` writes every reader with the full consent record
(the export format of :mod:`crusader_mail.storage.rows`), atomically; ``import --restore FILE``
checks every row of such a file, then loads it into the configured store unchanged.
``export --history`` writes the consent history instead (every change of every reader), and
``import --restore`` of that file appends it to the store's history (after the readers).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import console
from crusader_mail.delivery.mailer import make_mailer
from crusader_mail.errors import ConfigError, CrusaderMailError, ImportRejected, SubscriberError
from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.storage.contract import Roster
from crusader_mail.storage.rows import EVENT_HEADER, HEADER, format_event, format_time
from crusader_mail.subscriptions.forgetting import other_traces
from crusader_mail.subscriptions.imports import (
    check_history,
    check_restore,
    history_events,
    import_readers,
    is_history,
    read_import,
    restore_rows,
)
from crusader_mail.subscriptions.outbox import send_queued
from crusader_mail.util.masking import mask_email
from crusader_mail.util.statefile import atomic_writer

STATUS_CHOICE = click.Choice([status.value for status in Status])


def _readers(app: AppContext) -> Roster:
    return app.store().roster


def _send_waiting(app: AppContext) -> None:
    """Send the replies waiting in the store (queued by the server, the inbox or an earlier
    command) now that this command's change is stored; one line about it, nothing when none
    wait. A failure here is a warning: the change itself is done."""
    store = app.store()
    try:
        waiting = store.mail.waiting()
        if not waiting:
            return
        try:
            mailer = make_mailer(app.settings, app.clock)
        except ConfigError:
            replies = "reply" if waiting == 1 else "replies"
            click.echo(
                f"{waiting} {replies} waiting: sent by the next command run with "
                "SENDGRID_API_KEY (run, inbox process, serve)"
            )
            return
        click.echo(send_queued(store, mailer, app.clock).line())
    except CrusaderMailError as error:
        click.echo(f"crusader-mail: warning: the waiting replies were not sent: {error}", err=True)


@click.group()
def subscribers() -> None:
    """Manage the subscriber list (subscribers_dir/subscribers.csv)."""


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="The reader's name.")
@click.option(
    "--status", type=STATUS_CHOICE, default=Status.ACTIVE.value, show_default=True, help="Status."
)
@click.pass_obj
def add(app: AppContext, email: str, name: str, status: str) -> None:
    """Add EMAIL to the list. A reader already there is left as they are."""
    with _readers(app).edit() as roster:
        before = roster.get(email)
        after = roster.add(email, name=name, status=Status(status), via=Source.CLI, ref="cli add")
    shown = mask_email(after.email)
    if before is None:
        click.echo(f"added {shown} ({after.status.value})")
    elif before.status in (Status.UNSUBSCRIBED, Status.COMPLAINED):
        click.echo(
            f"{shown} is already on the list ({before.status.value}): unchanged; a reader who "
            "left comes back only by subscribing again themselves"
        )
    else:
        named = " (name added)" if after.name != before.name else ""
        click.echo(f"{shown} is already on the list ({before.status.value}): unchanged{named}")
    _send_waiting(app)


@subscribers.command()
@click.argument("email")
@click.option(
    "--forget", is_flag=True, help="Erase every trace of the address (a privacy request)."
)
@click.pass_obj
def remove(app: AppContext, email: str, forget: bool) -> None:
    """Unsubscribe EMAIL now, or with --forget erase it from the list entirely."""
    shown = mask_email(email.strip())
    if forget:
        store = app.store()
        with store.roster.edit() as roster:
            erased = roster.forget(email)
        click.echo(f"erased {shown}" if erased else f"{shown} is not on the list: nothing to erase")
        click.echo("other places to check:")
        for trace in other_traces(store, app.settings.outbox_dir):
            click.echo(f"  - {trace}")
        return
    with _readers(app).edit() as roster:
        before = roster.get(email)
        after = roster.unsubscribe(email, via=Source.CLI, ref="cli remove")
    if before is None or after is None:
        raise SubscriberError(f"{shown} is not on the list")
    if before.status is Status.UNSUBSCRIBED:
        click.echo(f"{mask_email(after.email)} was already unsubscribed")
    else:
        click.echo(f"unsubscribed {mask_email(after.email)} (was {before.status.value})")
    _send_waiting(app)


def _as_json(sub: Subscriber) -> dict[str, str | None]:
    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status.value,
        "subscribed_at": format_time(sub.subscribed_at) or None,
        "subscribed_via": sub.subscribed_via.value if sub.subscribed_via else None,
        "confirmed_at": format_time(sub.confirmed_at) or None,
        "confirmed_via": sub.confirmed_via.value if sub.confirmed_via else None,
        "left_at": format_time(sub.left_at) or None,
        "left_via": sub.left_via.value if sub.left_via else None,
        "ref": sub.ref,
        "updated_at": format_time(sub.updated_at) or None,
    }


@subscribers.command("list")
@click.option("--status", type=STATUS_CHOICE, help="Only readers with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_(app: AppContext, status: str | None, as_json: bool) -> None:
    """Print the readers with their full addresses."""
    wanted = Status(status) if status else None
    readers = _readers(app).iter(wanted)
    if as_json:
        rows = [_as_json(sub) for sub in readers]
        click.echo(json.dumps({"count": len(rows), "subscribers": rows}, indent=2))
        return
    table = Table(title=f"subscribers ({status or 'all'})")
    table.add_column("email", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("since", no_wrap=True)
    count = 0
    for sub in readers:
        since = sub.left_at or sub.confirmed_at or sub.subscribed_at or sub.updated_at
        table.add_row(sub.email, Text(sub.name), sub.status.value, format_time(since)[:10])
        count += 1
    table.caption = f"{count} reader{'s' if count != 1 else ''}"
    console().print(table)


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--status",
    type=click.Choice([Status.PENDING.value, Status.ACTIVE.value]),
    default=None,
    help="Status of the readers added (default: active).",
)
@click.option("--skip-invalid", is_flag=True, help="Import the good rows even if some are bad.")
@click.option(
    "--restore",
    is_flag=True,
    help="FILE is an export (`subscribers export`): store every reader as it is there, with "
    "its status and consent record (or, for `export --history`, append its events).",
)
@click.pass_obj
def import_(
    app: AppContext, file: Path, status: str | None, skip_invalid: bool, restore: bool
) -> None:
    """Import FILE (CSV with an `email` column, optional `name`; other columns ignored).

    Bad rows stop the import, each named, unless --skip-invalid. Readers already on the list
    keep their status: an import never brings back a reader who left. Rows whose addresses
    differ only in case are one reader (the first spelling is kept).

    With --restore, FILE is an export: every row is checked first (any bad row: nothing is
    restored, each bad row named), then each reader is stored exactly as exported, replacing
    the reader of that address; readers not in FILE are kept. A history export
    (`export --history`) is checked the same way, then its events are appended to the consent
    history: restore the readers first, then their history."""
    if restore:
        if status is not None or skip_invalid:
            raise click.UsageError(
                "--restore stores the file as it is: no --status, --skip-invalid"
            )
        _restore(app, file)
        return
    status = status or Status.ACTIVE.value
    parsed = read_import(file)
    if parsed.bad and not skip_invalid:
        raise ImportRejected(
            f"{file}: {len(parsed.bad)} bad row{'s' if len(parsed.bad) != 1 else ''}, nothing "
            f"imported (--skip-invalid imports the {len(parsed.rows)} good ones): "
            + "; ".join(parsed.bad)
        )
    report = import_readers(_readers(app), parsed.rows, status=Status(status), ref=file.name)
    for problem in parsed.bad:
        click.echo(f"skipped {problem}")
    click.echo(f"added {report.added} reader{'s' if report.added != 1 else ''} ({status})")
    if parsed.duplicates:
        click.echo(f"merged {parsed.duplicates} repeated row(s) of the same address")
    if parsed.case_merged:
        rows = "row that differs" if parsed.case_merged == 1 else "rows that differ"
        click.echo(f"merged {parsed.case_merged} {rows} only in case")
    if report.unchanged:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.unchanged.items()))
        click.echo(f"already on the list, status unchanged: {counts}")
    if report.kept_away:
        click.echo(
            f"{report.kept_away} of them had left (unsubscribed, bounced or complained) and "
            "were not re-activated"
        )
    if report.names_filled:
        click.echo(f"filled in {report.names_filled} missing name(s)")
    if parsed.bad:
        click.echo(f"skipped {len(parsed.bad)} bad row(s)")
    _send_waiting(app)


def _restore(app: AppContext, file: Path) -> None:
    if is_history(file):
        check_history(file)
        added = _readers(app).restore_history(history_events(file))
        click.echo(
            f"restored {added} event{'s' if added != 1 else ''} of the consent history from "
            f"{file.name}"
        )
        return
    check_restore(file)
    stored = _readers(app).restore(restore_rows(file))
    click.echo(
        f"restored {stored} reader{'s' if stored != 1 else ''} from {file.name}, each with "
        "the status and consent record exported"
    )


@subscribers.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the export to this file (atomically) instead of stdout.",
)
@click.option(
    "--history",
    is_flag=True,
    help="Export the consent history instead: every change of every reader, as stored.",
)
@click.pass_obj
def export(app: AppContext, out: Path | None, history: bool) -> None:
    """Write every reader with the full consent record as CSV: the header line, then one row
    per reader in address order. With --history, every event of the consent history (when,
    who, what changed, the status after it, how, and what made it), in the order stored.
    `subscribers import --restore` loads either into any store."""
    roster = _readers(app)
    header = EVENT_HEADER if history else HEADER
    lines = (format_event(e) for e in roster.history()) if history else roster.lines()
    what = "event" if history else "reader"
    if out is not None:
        count = 0
        with atomic_writer(out) as replacement:
            replacement.text.write(header + "\n")
            for line in lines:
                replacement.text.write(line + "\n")
                count += 1
        click.echo(f"exported {count} {what}{'s' if count != 1 else ''} to {out}")
        return
    chunk = [header]
    for line in lines:
        chunk.append(line)
        if len(chunk) >= 1000:
            click.echo("\n".join(chunk))
            chunk = []
    if chunk:
        click.echo("\n".join(chunk))


@subscribers.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def stats(app: AppContext, as_json: bool) -> None:
    """Count the readers by status."""
    counts = _readers(app).counts()
    total = sum(counts.values())
    if as_json:
        click.echo(json.dumps({"counts": {s.value: n for s, n in counts.items()}, "total": total}))
        return
    table = Table(title="subscribers")
    table.add_column("status")
    table.add_column("readers", justify="right")
    for status, count in counts.items():
        table.add_row(status.value, str(count))
    table.add_row("total", str(total), style="bold")
    console().print(table)


@subscribers.command()
@click.pass_obj
def tidy(app: AppContext) -> None:
    """Put a hand-edited list in order (it is checked first): rows sorted by address, and a
    list kept before addresses were one reader per mailbox rewritten with case variants merged."""
    changed = _readers(app).tidy()
    click.echo("put the list in order" if changed else "the list is already in order")
