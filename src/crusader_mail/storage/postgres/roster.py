"""The PostgreSQL store's roster: the table ``readers``, one row per mailbox.

- Reading needs no lock: :meth:`PgRoster.iter`, :meth:`PgRoster.recipients` (two columns) and
  :meth:`PgRoster.lines` stream through a server-side cursor in mailbox order (byte by byte, as the files store keeps its list, so an
  export is the same from either store), :meth:`PgRoster.counts` is one ``GROUP BY``, ``get``
  and ``candidates`` are index lookups (``mailbox``; ``hint`` or ``old_hint``, see
  :mod:`.hints`).
- :meth:`PgRoster.edit` is one transaction, in pipeline mode (a write is not waited for: it
  travels with the next query). Every row it reads or changes is locked first
  (``SELECT ... FOR UPDATE`` by mailbox, or by hint when a token is looked up) and changed by :mod:`crusader_mail.storage.rules`
  applied to the locked row, so units of change of any number of processes never lose each
  other's work, and a unit locks only the readers it touches. A reader inserted by another
  unit between the lookup and the insert is read again and the rule applied again.
- Every call that changes a reader appends its event (``rules.event``) to ``consent_events``
  (:mod:`.history`) in the same transaction; ``forget`` and
  :meth:`PgRoster.expire_pending` delete the reader's events and queued mail with the row
  (:func:`erase`). :meth:`PgRoster.history` reads a reader's events by index, or streams all.
- Bulk work (:mod:`.bulk`) uses the same rules, with ``COPY`` into temporary tables, and
  ``COPY``-es the events of its changes.

Addresses are matched by :func:`~crusader_mail.storage.rules.mailbox_key` (the primary key);
the stored ``email`` keeps the spelling first given.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from psycopg import Pipeline
from psycopg.abc import Query

from crusader_mail.clock import Clock
from crusader_mail.errors import StateError, SubscriberError
from crusader_mail.models import (
    ConsentAction,
    ConsentEvent,
    Frequency,
    OutgoingMessage,
    Preferences,
    Source,
    Status,
    Subscriber,
)
from crusader_mail.storage import rules
from crusader_mail.storage.contract import AddReport, BulkReport, HintOf, RowChange
from crusader_mail.storage.postgres import bulk, history
from crusader_mail.storage.postgres.connections import Connection, Database
from crusader_mail.storage.postgres.hints import Hints
from crusader_mail.storage.postgres.mail import queue_mail
from crusader_mail.storage.postgres.records import STREAM_ROWS, reader, select, values
from crusader_mail.storage.rows import format_row
from crusader_mail.util.masking import mask_email

RACES = 5  # times a unit reads a reader again after another unit inserted them first

R = TypeVar("R", Subscriber, Subscriber | None)
Rule = Callable[[Subscriber | None, str, datetime], R]
"""A rule of :mod:`crusader_mail.storage.rules` on (the stored reader, the address, now)."""


@dataclass(frozen=True)
class Change:
    """What a call changes a reader by: its history event's action, ``via`` and ``ref``."""

    action: ConsentAction
    via: Source
    ref: str


_ONE = select("WHERE mailbox = %s")
_LOCK_ONE = select("WHERE mailbox = %s FOR UPDATE")
_ALL = select("ORDER BY mailbox")
_WITH_STATUS = select("WHERE status = %s ORDER BY mailbox")
_RECIPIENTS = "SELECT email, name FROM readers WHERE status = 'active' ORDER BY mailbox"
_MAY_HAVE_EXPIRED = select(
    "WHERE status = 'pending' AND coalesce(updated_at, subscribed_at) < %s "
    "ORDER BY mailbox FOR UPDATE"
)  # the readers rules.expired may say expired (it decides)

_INSERT = history.with_event(
    "INSERT INTO readers VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (mailbox) DO NOTHING RETURNING mailbox"
)  # rowcount 0: another unit inserted the reader first (no row, no event)
_UPDATE = history.with_event(
    "UPDATE readers SET name = %s, status = %s, subscribed_at = %s, subscribed_via = %s, "
    "confirmed_at = %s, confirmed_via = %s, left_at = %s, left_via = %s, ref = %s, "
    "updated_at = %s WHERE mailbox = %s RETURNING mailbox"
)


_PREFERENCES_OF = "SELECT frequency, topics, paused_until FROM preferences WHERE mailbox = %s"
_EVERY_PREFERENCE = "SELECT mailbox, frequency, topics, paused_until FROM preferences"
_SET_PREFERENCES = (
    "INSERT INTO preferences (mailbox, frequency, topics, paused_until) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (mailbox) DO UPDATE SET frequency = EXCLUDED.frequency, "
    "topics = EXCLUDED.topics, paused_until = EXCLUDED.paused_until"
)
_INSERT_EVENT = (
    "INSERT INTO consent_events (mailbox, at, email, action, status, via, ref) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


_LOCK_MAILBOXES = "SELECT mailbox FROM readers WHERE mailbox = ANY(%s) ORDER BY mailbox FOR UPDATE"


def _preference_row(
    mailbox: str, prefs: Preferences
) -> tuple[str, str | None, list[str], datetime | None]:
    """The parameters of :data:`_SET_PREFERENCES` for ``prefs``."""
    frequency = prefs.frequency.value if prefs.frequency is not None else None
    return (mailbox, frequency, list(prefs.topics), prefs.paused_until)


def _preferences(frequency: str | None, topics: list[str], paused: datetime | None) -> Preferences:
    return Preferences(
        frequency=Frequency(frequency) if frequency else None,
        topics=tuple(topics),
        paused_until=paused,
    )


class PgChanges:
    """The readers during one unit of change (one transaction on ``conn``).

    It caches the readers locked so far by mailbox (``None``: not on the list), so reads
    see the changes made; :meth:`candidates` locks and caches the readers it finds. In
    ``pipeline`` mode (:meth:`PgRoster.edit`) a write whose result is not needed is not waited
    for: it goes to the server with the next query that is. With ``only`` (a bulk update offering one reader), other readers
    look absent and changing one raises :class:`SubscriberError`."""

    def __init__(
        self,
        conn: Connection,
        clock: Clock,
        hints: Hints,
        hint_of: HintOf | None,
        *,
        only: Subscriber | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        self._conn = conn
        self._pipeline = pipeline
        self._clock = clock
        self._hints = hints
        self._hint_of = hint_of
        self._rows: dict[str, Subscriber | None] = {}
        self._stored: set[str] = set()  # addresses read from the table: normal already
        self._only = rules.mailbox_key(only.email) if only is not None else None
        self._offered = only.email if only is not None else ""
        if only is not None:
            self._rows[rules.mailbox_key(only.email)] = only
        self._open = True
        self.changed = False  # a reader was changed or forgotten
        self.dirty = False  # something was written (a change, or mail queued)

    # -- reading -------------------------------------------------------------------------------

    def get(self, email: str) -> Subscriber | None:
        self._check_open()
        key = self._normal(email)
        return self._row(rules.mailbox_key(key)) if key is not None else None

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The addresses on the list now (this unit's changes included) whose hint is ``hint``;
        their readers are locked and read in the same query (a token's reader is the one a
        unit changes next)."""
        self._check_open()
        if self._only is not None:  # a bulk update's unit holds its one reader only
            found = self._hints.find(self._conn, hint, hint_of)
            return [email for email in found if rules.mailbox_key(email) == self._only]
        emails = []
        for email, row in self._hints.find_locked(self._conn, hint, hint_of):
            if row is not None:
                self._rows.setdefault(rules.mailbox_key(email), reader(row))
            self._stored.add(email)
            emails.append(email)
        return emails

    # -- changes -------------------------------------------------------------------------------

    def add(
        self,
        email: str,
        *,
        name: str = "",
        status: Status = Status.ACTIVE,
        via: Source,
        ref: str = "",
    ) -> Subscriber:
        def rule(old: Subscriber | None, key: str, now: datetime) -> Subscriber:
            return rules.add(old, key, name=name, status=status, via=via, ref=ref, now=now)

        return self._apply(email, rule, Change(ConsentAction.ADD, via, ref), strict=True)

    def request(self, email: str, *, name: str = "", via: Source, ref: str = "") -> Subscriber:
        def rule(old: Subscriber | None, key: str, now: datetime) -> Subscriber:
            return rules.request(old, key, name=name, via=via, ref=ref, now=now)

        return self._apply(email, rule, Change(ConsentAction.REQUEST, via, ref), strict=True)

    def confirm(self, email: str, *, via: Source, ref: str = "") -> Subscriber:
        def rule(old: Subscriber | None, key: str, now: datetime) -> Subscriber:
            return rules.confirm(old, key, via=via, ref=ref, now=now)

        return self._apply(email, rule, Change(ConsentAction.CONFIRM, via, ref), strict=True)

    def unsubscribe(self, email: str, *, via: Source, ref: str = "") -> Subscriber | None:
        def rule(old: Subscriber | None, _key: str, now: datetime) -> Subscriber | None:
            return rules.unsubscribe(old, via=via, ref=ref, now=now)

        return self._apply(email, rule, Change(ConsentAction.UNSUBSCRIBE, via, ref), strict=False)

    def mark(self, email: str, status: Status, *, via: Source, ref: str = "") -> Subscriber | None:
        def rule(old: Subscriber | None, _key: str, now: datetime) -> Subscriber | None:
            return rules.mark(old, status, via=via, ref=ref, now=now)

        action = ConsentAction.BOUNCE if status is Status.BOUNCED else ConsentAction.COMPLAIN
        return self._apply(email, rule, Change(action, via, ref), strict=False)

    def forget(self, email: str) -> bool:
        """Erase the reader's row, their history (this unit's events included) and their
        queued mail. ``True`` if they were on the list."""
        self._check_open()
        key = self._normal(email)
        if key is None:
            return False
        mailbox = rules.mailbox_key(key)
        if self._row(mailbox) is None:
            return False
        erase(self._conn, [mailbox])
        self._rows[mailbox] = None
        self.changed = self.dirty = True
        return True

    def preferences(self, email: str) -> Preferences:
        """The reader's row of ``preferences`` (the default when there is none)."""
        self._check_open()
        key = self._normal(email)
        if key is None:
            return Preferences()
        found = self._conn.execute(_PREFERENCES_OF, [rules.mailbox_key(key)]).fetchone()
        return _preferences(*found) if found is not None else Preferences()

    def set_preferences(
        self, email: str, prefs: Preferences, *, via: Source, ref: str = ""
    ) -> Subscriber | None:
        """An active reader's choice (:func:`rules.choose`), their row locked: the row of
        ``preferences`` written (deleted for the default) with its event."""
        self._check_open()
        key = self._normal(email)
        found = self._row(rules.mailbox_key(key)) if key is not None else None
        if found is None or found.status is not Status.ACTIVE:
            return None
        mailbox = rules.mailbox_key(found.email)
        now = self._clock.now()
        chosen = rules.choose(found, self.preferences(found.email), prefs, now=now)
        if chosen is None:
            return found
        new, action = chosen
        if new.is_default:
            self._conn.execute("DELETE FROM preferences WHERE mailbox = %s", [mailbox])
        else:
            self._conn.execute(_SET_PREFERENCES, _preference_row(mailbox, new))
        event = rules.event(action, found, via=via, ref=ref, now=now)
        self._conn.execute(_INSERT_EVENT, history.row(event))
        self.changed = self.dirty = True
        return found

    def queue_mail(self, message: OutgoingMessage) -> None:
        """Store ``message`` in this unit's transaction: it is kept only if the change is."""
        self._check_open()
        queue_mail(self._conn, message, self._clock.now())
        self.dirty = True

    # -- internals -----------------------------------------------------------------------------

    def close(self) -> None:
        self._open = False

    def _normal(self, email: str) -> str | None:
        """:func:`rules.normal_or_none` of ``email``; an address this unit found in the table
        (a token's reader) was stored normal, and is taken as it is."""
        return email if email in self._stored else rules.normal_or_none(email)

    def _check_open(self) -> None:
        if not self._open:
            raise SubscriberError(
                "the roster is closed: change the list inside `with roster.edit() as changes:`"
            )

    def _row(self, mailbox: str) -> Subscriber | None:
        """The reader with ``mailbox``, locked for this unit (cached once read)."""
        if mailbox in self._rows:
            return self._rows[mailbox]
        if self._only is not None:
            return None  # a bulk update's unit holds its one reader only
        row = self._conn.execute(_LOCK_ONE, [mailbox]).fetchone()
        found = self._rows[mailbox] = reader(row) if row is not None else None
        return found

    def _apply(self, email: str, rule: Rule[R], change: Change, *, strict: bool) -> R:
        """``rule`` applied to the locked reader ``email`` at the clock's now, and stored with
        ``change``'s event when it changed them."""
        self._check_open()
        now = self._clock.now()
        key = rules.normalize_email(email) if strict else self._normal(email)
        if key is None:
            return rule(None, email, now)
        mailbox = rules.mailbox_key(key)
        for _attempt in range(RACES):
            old = self._row(mailbox)
            new = rule(old, key, now)
            if new is None or new is old:
                return new
            event = rules.event(change.action, new, via=change.via, ref=change.ref, now=now)
            if self._write(mailbox, old, new, event):
                return new
            del self._rows[mailbox]  # another unit added them meanwhile: read them again
        raise StateError(f"{mask_email(key)} kept changing under this unit of change; try again")

    def _write(
        self, mailbox: str, old: Subscriber | None, new: Subscriber, event: ConsentEvent
    ) -> bool:
        """Store ``new`` and append ``event``; ``False`` when ``old`` was ``None`` and another
        unit inserted the reader first (nothing written)."""
        if self._only is not None and mailbox != self._only:
            raise SubscriberError(
                f"a bulk update offered {mask_email(self._offered)} and changed another "
                "address: it may change only the reader it is given"
            )
        event_row = history.row(event)[1:]  # its mailbox: the row's, as written
        if old is None:
            hint = self._hint_of(new.email) if self._hint_of is not None else None
            inserted = self._conn.execute(_INSERT, (*values(new, hint), *event_row))
            if self._pipeline is not None:
                self._pipeline.sync()  # its rowcount is in
            if inserted.rowcount == 0:
                return False
        else:
            self._conn.execute(_UPDATE, (*values(new, None)[2:12], mailbox, *event_row))
        self._rows[mailbox] = new
        self.changed = self.dirty = True
        return True


class PgRoster:
    """The table ``readers`` (see the module docstring)."""

    def __init__(self, db: Database, clock: Clock, hints: Hints) -> None:
        self._db = db
        self._clock = clock
        self._hints = hints

    # -- reading -------------------------------------------------------------------------------

    def iter(self, status: Status | None = None) -> Iterator[Subscriber]:
        """Every reader (or those with ``status``) in address order, streamed from a
        server-side cursor: memory stays flat whatever the size of the list."""
        if status is None:
            rows = self._stream(_ALL, ())
        else:
            rows = self._stream(_WITH_STATUS, (status.value,))
        return map(reader, rows)

    def lines(self) -> Iterator[str]:
        """Every reader as a row of the export format, in address order, streamed."""
        for row in self._stream(_ALL, ()):
            yield format_row(reader(row))

    def recipients(self) -> Iterator[tuple[str, str]]:
        """(address, name) of every active reader in address order, two columns streamed from
        a server-side cursor."""
        return self._stream(_RECIPIENTS, ())

    def counts(self) -> dict[Status, int]:
        counts = dict.fromkeys(Status, 0)
        with self._db.transaction() as conn:
            for status, count in conn.execute(
                "SELECT status, count(*) FROM readers GROUP BY status"
            ):
                counts[Status(status)] = int(count)
        return counts

    def get(self, email: str) -> Subscriber | None:
        """The reader with this address (any spelling of it), or ``None``."""
        key = rules.normal_or_none(email)
        if key is None:
            return None
        with self._db.transaction() as conn:
            row = conn.execute(_ONE, [rules.mailbox_key(key)]).fetchone()
        return reader(row) if row is not None else None

    def preferences(self) -> dict[str, Preferences]:
        """Every row of ``preferences`` (readers who chose something), by mailbox."""
        with self._db.transaction() as conn:
            rows = conn.execute(_EVERY_PREFERENCE).fetchall()
        return {row[0]: _preferences(*row[1:]) for row in rows}

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The stored addresses whose hint is ``hint``: an index lookup (hints missing or made
        with another ``secret_key`` are brought up to date first, see :mod:`.hints`); an empty
        hint finds nobody."""
        if not hint:
            return []
        with self._db.transaction() as conn:
            return self._hints.find(conn, hint, hint_of)

    def _stream(self, query: Query, params: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        with self._db.transaction() as conn, conn.cursor(name="crusader_mail_rows") as cursor:
            cursor.itersize = STREAM_ROWS
            cursor.execute(query, params)
            yield from cursor

    # -- changes -------------------------------------------------------------------------------

    @contextmanager
    def edit(self) -> Iterator[PgChanges]:
        """One transaction: committed when the block ends without an exception, rolled back
        otherwise."""
        hint_of = self._hints.for_write()
        with self._db.transaction() as conn, conn.pipeline() as pipeline:
            changes = PgChanges(conn, self._clock, self._hints, hint_of, pipeline=pipeline)
            try:
                yield changes
            finally:
                changes.close()

    def update_many(
        self,
        wanted: Collection[str],
        change: RowChange,
        *,
        match: Callable[[str], str] | None = None,
    ) -> BulkReport:
        """Apply ``change`` to every reader in ``wanted``, in one transaction: the wanted keys
        are copied into a temporary table and joined, so memory grows with the matches.

        Without ``match``, ``wanted`` holds addresses in any spelling. With ``match``, a reader
        is offered when ``match(stored address)`` is in ``wanted`` as given: for ``str.lower``
        and :func:`~crusader_mail.storage.rules.mailbox_key` that is the ``mailbox`` column;
        any other function is applied to every stored address. ``change`` gets
        :class:`PgChanges` holding only that reader: changing another raises
        :class:`SubscriberError` and stores nothing."""
        hint_of = self._hints.for_write()
        report = BulkReport()
        with self._db.connection() as conn:
            try:
                for found in bulk.locked_matches(conn, wanted, match):
                    report.matched += 1
                    changes = PgChanges(conn, self._clock, self._hints, hint_of, only=found)
                    try:
                        change(changes, found.email)
                    finally:
                        changes.close()
                    report.changed += changes.changed
                    report.written |= changes.dirty
            except BaseException:
                conn.rollback()
                raise
            if report.written:
                conn.commit()
            else:
                conn.rollback()
        return report

    def add_many(
        self, readers: Iterable[tuple[str, str]], *, status: Status, via: Source, ref: str
    ) -> AddReport:
        """Add each (normalized address, name) by :func:`rules.add` in one transaction,
        ``COPY``-ing each chunk of new and changed rows (see :func:`.bulk.add_many`)."""
        hint_of = self._hints.for_write()
        with self._db.transaction() as conn:
            return bulk.add_many(
                conn,
                readers,
                status=status,
                via=via,
                ref=ref,
                now=self._clock.now,
                hint_of=hint_of,
                one_by_one=lambda: PgChanges(conn, self._clock, self._hints, hint_of),
            )

    def restore(self, readers: Iterable[Subscriber]) -> int:
        """Store each record as given, replacing a reader already there, in one transaction
        (``COPY`` into a temporary table, then one ``INSERT ... ON CONFLICT``). A mailbox given
        twice raises :class:`SubscriberError` and stores nothing."""
        hint_of = self._hints.for_write()
        with self._db.transaction() as conn:
            return bulk.restore(conn, readers, hint_of, self._clock.now)

    def tidy(self) -> bool:
        """A table is never out of order: nothing to tidy."""
        return False

    # -- the consent history -------------------------------------------------------------------

    def history(self, email: str | None = None) -> Iterator[ConsentEvent]:
        """The reader's events oldest first (an index lookup by mailbox; nothing for what is
        no address), or with ``None`` every event in the order stored, streamed."""
        if email is None:
            return map(history.event, self._stream(history.EVERY, ()))
        key = rules.normal_or_none(email)
        if key is None:
            return iter(())
        with self._db.transaction() as conn:
            rows = conn.execute(history.OF_MAILBOX, [rules.mailbox_key(key)]).fetchall()
        return map(history.event, rows)

    def restore_history(self, events: Iterable[ConsentEvent]) -> int:
        """``COPY`` ``events`` as given, in one transaction; how many."""
        with self._db.transaction() as conn:
            return history.copy(conn, events)

    def restore_preferences(self, chosen: Iterable[tuple[str, Preferences]]) -> int:
        """Write ``chosen`` as given in one transaction (a default deletes the reader's row),
        the readers locked and checked to be on the list first; no event."""
        wanted = rules.to_restore(chosen)
        keys = sorted(wanted)
        with self._db.transaction() as conn:
            found = conn.execute(_LOCK_MAILBOXES, [keys]).fetchall()
            rules.check_on_list(keys, [row[0] for row in found])
            gone = [key for key in keys if wanted[key].is_default]
            if gone:
                conn.execute("DELETE FROM preferences WHERE mailbox = ANY(%s)", [gone])
            kept = [_preference_row(key, wanted[key]) for key in keys if not wanted[key].is_default]
            if kept:
                with conn.cursor() as cursor:
                    cursor.executemany(_SET_PREFERENCES, kept)
        return len(wanted)

    def expire_pending(self, before: datetime) -> int:
        """Erase the readers :func:`rules.expired` at ``before``, with their history and queued
        mail, in one transaction: the pending readers unchanged since ``before`` are locked,
        the rule picks among them."""
        with self._db.transaction() as conn:
            found = [reader(row) for row in conn.execute(_MAY_HAVE_EXPIRED, [before])]
            gone = [rules.mailbox_key(sub.email) for sub in found if rules.expired(sub, before)]
            if gone:
                erase(conn, gone)
        return len(gone)


def erase(conn: Connection, mailboxes: list[str]) -> None:
    """Delete these readers (by mailbox), their history and their queued mail, in ``conn``'s
    transaction."""
    conn.execute("DELETE FROM readers WHERE mailbox = ANY(%s)", [mailboxes])
    conn.execute("DELETE FROM consent_events WHERE mailbox = ANY(%s)", [mailboxes])
    conn.execute("DELETE FROM mail_queue WHERE mailbox = ANY(%s)", [mailboxes])
