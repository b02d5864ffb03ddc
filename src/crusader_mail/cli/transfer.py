"""``crusader-mail subscribers import`` and ``export``: readers in and out of the store.

``import`` reads a CSV (ours or another tool's export, :mod:`crusader_mail.subscriptions.imports`)
and prints addresses masked; ``export`` prints them whole (the user asked for the list). Moving
between stores: ``export --out FILE`` writes every reader with the full consent record (the
export format of :mod:`crusader_mail.storage.rows`), atomically; ``import --restore FILE`` checks
every row of such a file, then loads it into the configured store unchanged. ``export
--history`` writes the consent history instead, and ``--preferences`` the readers' choices;
``import --restore`` of those appends the history, or puts back the choices.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from crusader_mail.cli.context import AppContext
from crusader_mail.cli.output import JSON_OPTION, emit
from crusader_mail.cli.replies import send_waiting, with_replies
from crusader_mail.errors import ImportRejected
from crusader_mail.models import Status
from crusader_mail.subscriptions.export import Export, export_json, export_rows, write_export
from crusader_mail.subscriptions.import_report import ImportDone
from crusader_mail.subscriptions.imports import import_readers, read_import, record_left
from crusader_mail.subscriptions.restore import (
    check_history,
    check_preferences,
    check_restore,
    history_events,
    is_history,
    is_preferences,
    preference_rows,
    restore_rows,
)


@click.command("import")
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
        roster = app.store().roster
        report = import_readers(roster, parsed.joining(), status=Status(status), ref=file.name)
        left = record_left(roster, parsed.leaving(), ref=file.name)
    done = ImportDone(file.name, Status(status), parsed, report, left)
    if as_json:
        emit(with_replies(done.as_json(), send_waiting(app, as_json=True)))
        return
    for line in done.lines():
        click.echo(line)
    send_waiting(app)


def _restore(app: AppContext, file: Path, as_json: bool) -> None:
    """Restore the export ``file`` (readers, their history or their preferences, by its header
    line), then say how many in one line (or one JSON object)."""
    roster = app.store().roster
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
        emit({"file": file.name, key: count})
        return
    click.echo("restored " + said.format(n=count, s="s" if count != 1 else "", file=file.name))


@click.command()
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
    what = Export.HISTORY if history else Export.PREFERENCES if preferences else Export.READERS
    roster = app.store().roster
    if as_json and out is None:
        emit(export_json(roster, what))
        return
    header, rows = export_rows(roster, what)
    if out is not None:
        count = write_export(out, header, rows)
        if as_json:
            emit({"exported": count, "what": f"{what.value}s", "out": str(out)})
            return
        click.echo(f"exported {count} {what.value}{'s' if count != 1 else ''} to {out}")
        return
    chunk = [header]
    for line in rows:
        chunk.append(line)
        if len(chunk) >= 1000:
            click.echo("\n".join(chunk))
            chunk = []
    if chunk:
        click.echo("\n".join(chunk))
