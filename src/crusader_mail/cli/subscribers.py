"""``crusader-mail subscribers``: add, remove, list, import, export, stats, tidy.

Contract: a thin layer over the store's roster (:func:`crusader_mail.storage.open_store`) and
:mod:`crusader_mail.subscriptions.imports`. ``add``, ``remove`` and ``import`` print addresses
masked (their output lands in logs); ``list`` and ``export`` print them whole, because there
the user asked for the list itself. Every command takes ``--json``: one JSON document on
stdout, the same addresses masked or whole as its text, notes on stderr. Failures are raised as
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
import tempfile
from collections.abc import Iterable, Iterator, Mapping
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
from crusader_mail.storage.rows import (
    EVENT_HEADER,
    HEADER,
    PREFERENCES_HEADER,
    format_event,
    format_preferences,
    format_time,
)
from crusader_mail.subscriptions.forgetting import other_traces
from crusader_mail.subscriptions.imports import (
    LeftReport,
    check_history,
    check_preferences,
    check_restore,
    history_events,
    import_readers,
    is_history,
    is_preferences,
    preference_rows,
    read_import,
    record_left,
    restore_rows,
)
from crusader_mail.subscriptions.outbox import send_queued
from crusader_mail.util.masking import mask_email
from crusader_mail.util.statefile import atomic_writer

STATUS_CHOICE = click.Choice([status.value for status in Status])


def _readers(app: AppContext) -> Roster:
    return app.store().roster


JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout."
)


def _emit(data: Mapping[str, object]) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))


def _send_waiting(app: AppContext, *, as_json: bool = False) -> dict[str, int] | None:
    """Send the replies waiting in the store (queued by the server, the inbox or an earlier
    command) now that this command's change is stored; one line about it (with ``as_json``
    the counts are returned for the JSON document instead), nothing when none wait. A failure
    here is a warning: the change itself is done."""
    store = app.store()
    try:
        waiting = store.mail.waiting()
        if not waiting:
            return None
        try:
            mailer = make_mailer(app.settings, app.clock)
        except ConfigError:
            replies = "reply" if waiting == 1 else "replies"
            click.echo(
                f"{waiting} {replies} waiting: sent by the next command run with "
                "SENDGRID_API_KEY (run, inbox process, serve)",
                err=as_json,
            )
            return {"sent": 0, "failed": 0, "waiting": waiting}
        report = send_queued(store, mailer, app.clock)
        if not as_json:
            click.echo(report.line())
        return report.as_json()
    except CrusaderMailError as error:
        click.echo(f"crusader-mail: warning: the waiting replies were not sent: {error}", err=True)
        return None


def _with_replies(data: Mapping[str, object], replies: dict[str, int] | None) -> dict[str, object]:
    return dict(data) if replies is None else {**data, "replies": replies}


@click.group()
def subscribers() -> None:
    """Manage the subscriber list (subscribers_dir/subscribers.csv)."""


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="The reader's name.")
@click.option(
    "--status", type=STATUS_CHOICE, default=Status.ACTIVE.value, show_default=True, help="Status."
)
@JSON_OPTION
@click.pass_obj
def add(app: AppContext, email: str, name: str, status: str, as_json: bool) -> None:
    """Add EMAIL to the list. A reader already there is left as they are."""
    with _readers(app).edit() as roster:
        before = roster.get(email)
        after = roster.add(email, name=name, status=Status(status), via=Source.CLI, ref="cli add")
    shown = mask_email(after.email)
    if as_json:
        done = {
            "email": shown,
            "added": before is None,
            "status": after.status.value,
            "name_added": before is not None and after.name != before.name,
        }
        _emit(_with_replies(done, _send_waiting(app, as_json=True)))
        return
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
@JSON_OPTION
@click.pass_obj
def remove(app: AppContext, email: str, forget: bool, as_json: bool) -> None:
    """Unsubscribe EMAIL now, or with --forget erase it from the list entirely."""
    shown = mask_email(email.strip())
    if forget:
        store = app.store()
        with store.roster.edit() as roster:
            erased = roster.forget(email)
        traces = other_traces(store, app.settings.outbox_dir)
        if as_json:
            _emit({"email": shown, "erased": erased, "other_places": traces})
            return
        click.echo(f"erased {shown}" if erased else f"{shown} is not on the list: nothing to erase")
        click.echo("other places to check:")
        for trace in traces:
            click.echo(f"  - {trace}")
        return
    with _readers(app).edit() as roster:
        before = roster.get(email)
        after = roster.unsubscribe(email, via=Source.CLI, ref="cli remove")
    if before is None or after is None:
        raise SubscriberError(f"{shown} is not on the list")
    if as_json:
        done = {
            "email": mask_email(after.email),
            "status": after.status.value,
            "was": before.status.value,
        }
        _emit(_with_replies(done, _send_waiting(app, as_json=True)))
        return
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


def _readers_json(readers: Iterable[Subscriber]) -> dict[str, object]:
    rows = [_as_json(sub) for sub in readers]
    return {"count": len(rows), "subscribers": rows}


@subscribers.command("list")
@click.option("--status", type=STATUS_CHOICE, help="Only readers with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_(app: AppContext, status: str | None, as_json: bool) -> None:
    """Print the readers with their full addresses."""
    wanted = Status(status) if status else None
    readers = _readers(app).iter(wanted)
    if as_json:
        click.echo(json.dumps(_readers_json(readers), indent=2))
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
    "its status and consent record (or, for `export --history`, append its events; for "
    "`export --preferences`, store each reader's preferences).",
)
@JSON_OPTION
@click.pass_obj
def import_(
    app: AppContext,
    file: Path,
    status: str | None,
    skip_invalid: bool,
    restore: bool,
    as_json: bool,
) -> None:
    """Import FILE: a CSV with an address column and an optional name, or the subscriber
    export of Mailchimp, Substack, Buttondown, listmonk or Ghost. The first line says which
    columns were used: the address (`email`, `Email Address`, `E-mail`), the name (`name`, or
    `First Name` + `Last Name`) and the columns that say who left (Mailchimp's `UNSUB_TIME`
    and `CLEAN_TIME`, Substack's `email_disabled`, Ghost's `subscribed_to_emails`, Buttondown's
    `subscriber_type`, a `status` column such as listmonk's); other columns are ignored.

    Rows marked as left (unsubscribed, cleaned, blocklisted, bounced, complained) are recorded
    as readers who left, without their name, so they are never sent an issue and no later
    import brings them back; a reader on the list whom the file marks as left leaves. Rows that
    are neither subscribed nor left (unconfirmed, disabled, a deletion request) are skipped.

    Bad rows stop the import, each named, unless --skip-invalid. Readers already on the list
    keep their status: an import never brings back a reader who left. Rows whose addresses
    differ only in case are one reader (the first spelling is kept).

    With --restore, FILE is an export: every row is checked first (any bad row: nothing is
    restored, each bad row named), then each reader is stored exactly as exported, replacing
    the reader of that address; readers not in FILE are kept. A history export
    (`export --history`) is checked the same way, then its events are appended to the consent
    history; a preferences export (`export --preferences`), then each reader's preferences
    (pause, topics, frequency) replace theirs, without an event: restore the readers first,
    then their history and their preferences."""
    if restore:
        if status is not None or skip_invalid:
            raise click.UsageError(
                "--restore stores the file as it is: no --status, --skip-invalid"
            )
        _restore(app, file, as_json)
        return
    status = status or Status.ACTIVE.value
    with tempfile.TemporaryDirectory(prefix="crusader-mail-import-") as spool:
        parsed = read_import(file, Path(spool))  # sorted by mailbox in runs spilled there
        if parsed.bad and not skip_invalid:
            raise ImportRejected(
                f"{file}: {len(parsed.bad)} bad row{'s' if len(parsed.bad) != 1 else ''}, "
                f"nothing imported (--skip-invalid imports the {parsed.readers + parsed.leavers}"
                " good ones): " + "; ".join(parsed.bad)
            )
        if parsed.columns is not None and not as_json:  # --json: in the object
            click.echo(parsed.columns.describe())
        roster = _readers(app)
        report = import_readers(roster, parsed.joining(), status=Status(status), ref=file.name)
        left = record_left(roster, parsed.leaving(), ref=file.name)
    if as_json:
        done: dict[str, object] = {
            "file": file.name,
            "columns": parsed.columns.as_json() if parsed.columns else None,
            "status": status,
            "added": report.added,
            "left": left.as_json(),
            "skipped": parsed.skipped,
            "bad": parsed.bad,
            "duplicates": parsed.duplicates,
            "case_merged": parsed.case_merged,
            "unchanged": report.unchanged,
            "kept_away": report.kept_away,
            "names_filled": report.names_filled,
        }
        _emit(_with_replies(done, _send_waiting(app, as_json=True)))
        return
    for problem in parsed.bad:
        click.echo(f"skipped {problem}")
    click.echo(f"added {report.added} reader{'s' if report.added != 1 else ''} ({status})")
    _say_left(left)
    if parsed.skipped:
        count = sum(parsed.skipped.values())
        why = ", ".join(f"{reason} ({n})" for reason, n in sorted(parsed.skipped.items()))
        click.echo(
            f"skipped {count} row{'s' if count != 1 else ''}, neither subscribed nor left: {why}"
        )
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


def _counted(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _say_left(left: LeftReport) -> None:
    if left.recorded:
        total = sum(left.recorded.values())
        click.echo(
            f"recorded {total} reader{'s' if total != 1 else ''} who left "
            f"({_counted(left.recorded)}), without their names: never sent an issue, never "
            "brought back by an import"
        )
    if left.now_left:
        total = sum(left.now_left.values())
        verb = "reader on the list is" if total == 1 else "readers on the list are"
        click.echo(f"{total} {verb} marked as left in the file: now {_counted(left.now_left)}")
    if left.already_left:
        click.echo(f"{left.already_left} marked as left had already left here: unchanged")


def _restore(app: AppContext, file: Path, as_json: bool) -> None:
    """Restore the export ``file`` (readers, their history or their preferences, by its header
    line), then say how many in one line (or one JSON object)."""
    roster = _readers(app)
    if is_preferences(file):
        check_preferences(file)
        count = roster.restore_preferences(preference_rows(file))
        key, said = "preferences_restored", "the preferences of {n} reader{s} from {file}"
    elif is_history(file):
        check_history(file)
        count = roster.restore_history(history_events(file))
        key, said = "events_restored", "{n} event{s} of the consent history from {file}"
    else:
        check_restore(file)
        count = roster.restore(restore_rows(file))
        key = "restored"
        said = "{n} reader{s} from {file}, each with the status and consent record exported"
    if as_json:
        _emit({"file": file.name, key: count})
        return
    click.echo("restored " + said.format(n=count, s="s" if count != 1 else "", file=file.name))


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
@click.option(
    "--preferences",
    is_flag=True,
    help="Export the readers' preferences instead: pause, topics, frequency of each reader "
    "who chose something.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object: with --out what was written, else the readers as `list "
    "--json` prints them (with --history, the events).",
)
@click.pass_obj
def export(
    app: AppContext, out: Path | None, history: bool, preferences: bool, as_json: bool
) -> None:
    """Write every reader with the full consent record as CSV: the header line, then one row
    per reader in address order. With --history, every event of the consent history (when,
    who, what changed, the status after it, how, and what made it), in the order stored. With
    --preferences, what each reader who chose something chose (frequency, topics, the end of
    a pause), by mailbox. `subscribers import --restore` loads each into any store."""
    if history and preferences:
        raise click.UsageError("--history and --preferences are two exports: one at a time")
    roster = _readers(app)
    chosen = sorted(roster.preferences().items()) if preferences else []
    if as_json and out is None:
        if history:
            events = [event.model_dump(mode="json") for event in roster.history()]
            _emit({"count": len(events), "events": events})
        elif preferences:
            rows = [{"mailbox": key, **prefs.model_dump(mode="json")} for key, prefs in chosen]
            _emit({"count": len(rows), "preferences": rows})
        else:
            _emit(_readers_json(roster.iter()))
        return
    lines: Iterator[str]
    if history:
        header, lines, what = EVENT_HEADER, map(format_event, roster.history()), "event"
    elif preferences:
        header, what = PREFERENCES_HEADER, "preference"  # one row: a reader's preferences
        lines = (format_preferences(key, prefs) for key, prefs in chosen)
    else:
        header, lines, what = HEADER, roster.lines(), "reader"
    if out is not None:
        count = 0
        with atomic_writer(out) as replacement:
            replacement.text.write(header + "\n")
            for line in lines:
                replacement.text.write(line + "\n")
                count += 1
        if as_json:
            _emit({"exported": count, "what": f"{what}s", "out": str(out)})
            return
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
@JSON_OPTION
@click.pass_obj
def tidy(app: AppContext, as_json: bool) -> None:
    """Put a hand-edited list in order (it is checked first): rows sorted by address, and a
    list kept before addresses were one reader per mailbox rewritten with case variants merged."""
    changed = _readers(app).tidy()
    if as_json:
        _emit({"changed": changed})
        return
    click.echo("put the list in order" if changed else "the list is already in order")
