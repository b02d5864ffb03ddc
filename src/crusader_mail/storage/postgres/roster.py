"""The PostgreSQL store's roster: the table ``readers``, one row per mailbox.

- Reading needs no lock: :meth:`PgRoster.iter`, :meth:`PgRoster.recipients` (two columns) and
  :meth:`PgRoster.lines` stream through a server-side cursor in mailbox order (byte by byte,
  as the files store keeps its list, so an export is the same from either store), :meth:`PgRoster.counts` is one ``GROUP BY``, ``get``
  and ``candidates`` are index lookups (``mailbox``; ``hint`` or ``old_hint``, see
  :mod:`.hints`).
- :meth:`PgRoster.edit` is one transaction (:class:`~.changes.PgChanges`, :mod:`.changes`):
  every row it reads or changes is locked first and changed by
  :mod:`crusader_mail.storage.rules` applied to the locked row, so units of change of any
  number of processes never lose each other's work, and a unit locks only the readers it
  touches.
- Every call that changes a reader appends its event (``rules.event``) to ``consent_events``
  (:mod:`.history`) in the same transaction; ``forget`` and
  :meth:`PgRoster.expire_pending` delete the reader's events and queued mail with the row
  (:func:`~.changes.erase`). :meth:`PgRoster.history` reads a reader's events by index, or streams all.
- Bulk work (:mod:`.bulk`) uses the same rules, with ``COPY`` into temporary tables, and
  ``COPY``-es the events of its changes.

Addresses are matched by :func:`~crusader_mail.storage.rules.mailbox_key` (the primary key);
the stored ``email`` keeps the spelling first given.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from psycopg.abc import Query

from crusader_mail.clock import Clock
from crusader_mail.models import (
    ConsentEvent,
    Preferences,
    Source,
    Status,
    Subscriber,
)
from crusader_mail.storage import rules
from crusader_mail.storage.contract import AddReport, BulkReport, HintOf, RowChange
from crusader_mail.storage.postgres import bulk, history
from crusader_mail.storage.postgres.changes import (
    ONE,
    SET_PREFERENCES,
    PgChanges,
    erase,
    preference_row,
    preferences_of,
)
from crusader_mail.storage.postgres.connections import Database
from crusader_mail.storage.postgres.hints import Hints
from crusader_mail.storage.postgres.records import STREAM_ROWS, reader, select
from crusader_mail.storage.rows import format_row

_ALL = select("ORDER BY mailbox")
_WITH_STATUS = select("WHERE status = %s ORDER BY mailbox")
_RECIPIENTS = "SELECT email, name FROM readers WHERE status = 'active' ORDER BY mailbox"
_MAY_HAVE_EXPIRED = select(
    "WHERE status = 'pending' AND coalesce(updated_at, subscribed_at) < %s "
    "ORDER BY mailbox FOR UPDATE"
)  # the readers rules.expired may say expired (it decides)


_EVERY_PREFERENCE = "SELECT mailbox, frequency, topics, paused_until FROM preferences"


_LOCK_MAILBOXES = "SELECT mailbox FROM readers WHERE mailbox = ANY(%s) ORDER BY mailbox FOR UPDATE"


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
            row = conn.execute(ONE, [rules.mailbox_key(key)]).fetchone()
        return reader(row) if row is not None else None

    def preferences(self) -> dict[str, Preferences]:
        """Every row of ``preferences`` (readers who chose something), by mailbox."""
        with self._db.transaction() as conn:
            rows = conn.execute(_EVERY_PREFERENCE).fetchall()
        return {row[0]: preferences_of(*row[1:]) for row in rows}

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
            kept = [preference_row(key, wanted[key]) for key in keys if not wanted[key].is_default]
            if kept:
                with conn.cursor() as cursor:
                    cursor.executemany(SET_PREFERENCES, kept)
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
