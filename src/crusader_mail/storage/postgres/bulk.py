"""Bulk work on ``readers``, inside the caller's transaction, with the roster's rules.

- :func:`locked_matches` (the suppression sync): the wanted keys are ``COPY``-ed into a
  temporary table and joined with ``readers``; the matching rows come back locked, so memory
  grows with the matches, not with the list or the wanted keys' join.
- :func:`add_many` (imports): chunk by chunk, the readers already there are locked and read,
  :func:`~crusader_mail.storage.rules.add` decides, and the new and changed rows are ``COPY``-ed
  into a temporary table and stored with one ``INSERT ... ON CONFLICT``, their ``add`` events
  ``COPY``-ed into the history. Memory grows with a chunk, never with the list.
- :func:`restore`: every record is ``COPY``-ed into the temporary table (and its ``restore``
  event into the history), a mailbox given twice is refused, then one ``INSERT ... ON
  CONFLICT`` stores them all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime

from crusader_mail.errors import SubscriberError
from crusader_mail.models import ConsentAction, ConsentEvent, Source, Status, Subscriber
from crusader_mail.storage import rules
from crusader_mail.storage.contract import AddReport, HintOf, RosterChanges
from crusader_mail.storage.postgres import history
from crusader_mail.storage.postgres.connections import Connection
from crusader_mail.storage.postgres.records import STREAM_ROWS, chunks, reader, select, values
from crusader_mail.storage.rows import AddressCheck
from crusader_mail.util.masking import mask_email

CHUNK = 5000
BY_MAILBOX: frozenset[Callable[[str], str]] = frozenset({str.lower, rules.mailbox_key})
"""``match`` functions that give an address's ``mailbox`` column (so the join can use it)."""

_WANTED = select(
    "WHERE mailbox IN (SELECT mailbox FROM wanted_readers) ORDER BY mailbox FOR UPDATE"
)
_LOCK_MANY = select("WHERE mailbox = ANY(%s) ORDER BY mailbox FOR UPDATE")
_INSERT_NEW = (
    "INSERT INTO readers SELECT * FROM incoming_readers "
    "ON CONFLICT (mailbox) DO NOTHING RETURNING mailbox"
)
_UPSERT = (
    "INSERT INTO readers AS r SELECT * FROM incoming_readers ON CONFLICT (mailbox) DO UPDATE "
    "SET email = EXCLUDED.email, name = EXCLUDED.name, status = EXCLUDED.status, "
    "subscribed_at = EXCLUDED.subscribed_at, subscribed_via = EXCLUDED.subscribed_via, "
    "confirmed_at = EXCLUDED.confirmed_at, confirmed_via = EXCLUDED.confirmed_via, "
    "left_at = EXCLUDED.left_at, left_via = EXCLUDED.left_via, ref = EXCLUDED.ref, "
    "updated_at = EXCLUDED.updated_at, hint = CASE WHEN r.email = EXCLUDED.email "
    "THEN coalesce(EXCLUDED.hint, r.hint) ELSE EXCLUDED.hint END, "
    "old_hint = CASE WHEN r.email = EXCLUDED.email THEN r.old_hint END"
)
_TWICE = "SELECT min(email) FROM incoming_readers GROUP BY mailbox HAVING count(*) > 1 LIMIT 1"


# --- the suppression sync ---------------------------------------------------------------------


def locked_matches(
    conn: Connection, wanted: Collection[str], match: Callable[[str], str] | None
) -> list[Subscriber]:
    """The readers ``wanted`` names (see :meth:`PgRoster.update_many`), locked, by mailbox."""
    keys: Iterable[str]
    if match is None:
        keys = (
            rules.mailbox_key(key) for key in map(rules.normal_or_none, wanted) if key is not None
        )
    elif match in BY_MAILBOX:
        keys = wanted
    else:
        keys = _matching(conn, wanted, match)
    conn.execute("CREATE TEMP TABLE wanted_readers (mailbox text NOT NULL) ON COMMIT DROP")
    with conn.cursor().copy("COPY wanted_readers (mailbox) FROM STDIN") as copy:
        for key in keys:
            copy.write_row((key,))
    conn.execute("ANALYZE wanted_readers")
    rows = conn.execute(_WANTED).fetchall()
    conn.execute("DROP TABLE wanted_readers")
    return [reader(row) for row in rows]


def _matching(conn: Connection, wanted: Collection[str], match: Callable[[str], str]) -> list[str]:
    """The mailboxes whose stored address ``match`` maps into ``wanted`` (a scan)."""
    found = []
    with conn.cursor(name="crusader_mail_match") as cursor:
        cursor.itersize = STREAM_ROWS
        cursor.execute("SELECT mailbox, email FROM readers")
        for mailbox, email in cursor:
            if match(email) in wanted:
                found.append(mailbox)
    return found


# --- imports and restores ---------------------------------------------------------------------


def add_many(
    conn: Connection,
    readers: Iterable[tuple[str, str]],
    *,
    status: Status,
    via: Source,
    ref: str,
    now: Callable[[], datetime],
    hint_of: HintOf | None,
    one_by_one: Callable[[], RosterChanges],
) -> AddReport:
    """Add each (normalized address, name) by :func:`rules.add`, as
    :meth:`SubscriberList.add_many <crusader_mail.storage.files.bulk.BulkWriter.add_many>`
    counts them. A reader another unit inserted meanwhile is added again one by one."""
    report = AddReport()
    _incoming(conn)
    for chunk in chunks(readers, CHUNK):
        known = {
            rules.mailbox_key(sub.email): sub
            for sub in _locked(conn, [rules.mailbox_key(email) for email, _name in chunk])
        }
        current: dict[str, Subscriber] = dict(known)
        events: list[ConsentEvent] = []  # of this chunk's changes, in the order made
        for email, name in chunk:
            mailbox = rules.mailbox_key(email)
            old = current.get(mailbox)
            at = now()
            new = rules.add(old, email, name=name, status=status, via=via, ref=ref, now=at)
            _count(report, old, new)
            if new is not old:
                events.append(rules.event(ConsentAction.ADD, new, via=via, ref=ref, now=at))
            current[mailbox] = new
        added = {mailbox: sub for mailbox, sub in current.items() if mailbox not in known}
        changed = [sub for mailbox, sub in current.items() if known.get(mailbox, sub) is not sub]
        _store(conn, added.values(), hint_of)
        inserted = {mailbox for (mailbox,) in conn.execute(_INSERT_NEW).fetchall()}
        _store(conn, changed, hint_of)
        conn.execute(_UPSERT)
        lost = added.keys() - inserted  # another unit added them meanwhile
        history.copy(conn, (e for e in events if rules.mailbox_key(e.email) not in lost))
        for mailbox in lost:  # added again one by one (their events with them)
            report.added -= 1
            changes = one_by_one()
            sub = added[mailbox]
            old = changes.get(sub.email)
            new = changes.add(sub.email, name=sub.name, status=status, via=via, ref=ref)
            _count(report, old, new)
    return report


def _count(report: AddReport, old: Subscriber | None, new: Subscriber) -> None:
    if old is None:
        report.added += 1
        return
    if new.name != old.name:
        report.names_filled += 1
    report.unchanged[old.status.value] = report.unchanged.get(old.status.value, 0) + 1


def restore(
    conn: Connection,
    readers: Iterable[Subscriber],
    hint_of: HintOf | None,
    now: Callable[[], datetime],
) -> int:
    """Store each record as given (addresses in normal form), replacing the reader of that
    mailbox, each with its ``restore`` event; how many were given. A mailbox given twice (in
    any case) raises :class:`SubscriberError` before anything is stored (the caller's
    transaction rolls back). Chunk by chunk, the readers are ``COPY``-ed into the temporary
    table and their events into the history, so memory stays flat."""
    check = AddressCheck()
    count = 0
    _incoming(conn)
    conn.execute("TRUNCATE incoming_readers")
    for chunk in chunks(readers, CHUNK):
        for sub in chunk:
            if not check.is_normal(sub.email):
                raise SubscriberError(f"{mask_email(sub.email)} is not an address in normal form")
        _copy(conn, chunk, hint_of)
        history.copy(
            conn,
            (
                rules.event(ConsentAction.RESTORE, sub, via=Source.IMPORT, ref="restore", now=now())
                for sub in chunk
            ),
        )
        count += len(chunk)
    twice = conn.execute(_TWICE).fetchone()
    if twice is not None:
        raise SubscriberError(f"{mask_email(twice[0])} is given twice (in any case)")
    conn.execute(_UPSERT)
    return count


def _incoming(conn: Connection) -> None:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS incoming_readers (LIKE readers) ON COMMIT DROP")


def _locked(conn: Connection, mailboxes: list[str]) -> list[Subscriber]:
    rows = conn.execute(_LOCK_MANY, [mailboxes]).fetchall()
    return [reader(row) for row in rows]


def _store(conn: Connection, subs: Iterable[Subscriber], hint_of: HintOf | None) -> None:
    """``COPY`` ``subs`` into ``incoming_readers``, emptied first."""
    conn.execute("TRUNCATE incoming_readers")
    _copy(conn, subs, hint_of)


def _copy(conn: Connection, subs: Iterable[Subscriber], hint_of: HintOf | None) -> None:
    """``COPY`` ``subs`` into ``incoming_readers``."""
    with conn.cursor().copy("COPY incoming_readers FROM STDIN") as copy:
        for sub in subs:
            copy.write_row(values(sub, hint_of(sub.email) if hint_of is not None else None))
