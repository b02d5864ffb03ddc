"""The PostgreSQL store's consent history: the table ``consent_events`` (schema 3).

One row per change of a reader (:func:`crusader_mail.storage.rules.event`), inserted in the
transaction of the change, so a unit that fails stores none; ``seq`` numbers the rows in the
order stored. Rows are never updated: only forgetting a reader (``forget``,
``expire_pending``: :func:`.roster.erase`) deletes their rows, in the transaction that deletes
the reader.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, LiteralString

from psycopg import sql

from crusader_mail.models import ConsentEvent
from crusader_mail.storage.postgres.connections import Connection
from crusader_mail.storage.rules import mailbox_key

OF_MAILBOX = (
    "SELECT at, email, action, status, via, ref FROM consent_events WHERE mailbox = %s "
    "ORDER BY at, seq"
)
"""A reader's events, oldest first (a tie in the order stored)."""
EVERY = "SELECT at, email, action, status, via, ref FROM consent_events ORDER BY seq"
"""Every event, in the order stored."""
_COPY = "COPY consent_events (mailbox, at, email, action, status, via, ref) FROM STDIN"


def with_event(change: LiteralString) -> bytes:
    """``change`` (a statement writing one reader, ``RETURNING mailbox``) and the reader's
    event in one statement, one round trip: the event is inserted only if the row was written.
    Its parameters: ``change``'s, then :func:`row` of the event without its first field. The
    bytes sent (composed once, not at every execution)."""
    return (
        sql.SQL(
            "WITH written AS ({change}) INSERT INTO consent_events "
            "(mailbox, at, email, action, status, via, ref) "
            "SELECT mailbox, %s::timestamptz, %s, %s, %s, %s, %s FROM written"
        )
        .format(change=sql.SQL(change))
        .as_bytes()
    )


def row(event: ConsentEvent) -> tuple[Any, ...]:
    """The row of ``consent_events`` (without ``seq``) holding ``event``."""
    return (
        mailbox_key(event.email),
        event.at,
        event.email,
        event.action.value,
        event.status.value,
        event.via.value,
        event.ref,
    )


def event(found: tuple[Any, ...]) -> ConsentEvent:
    """A :class:`ConsentEvent` from a row of :data:`OF_MAILBOX` or :data:`EVERY`."""
    at, email, action, status, via, ref = found
    return ConsentEvent(at=at, email=email, action=action, status=status, via=via, ref=ref)


def copy(conn: Connection, events: Iterable[ConsentEvent]) -> int:
    """``COPY`` ``events`` in ``conn``'s transaction, in their order; how many."""
    count = 0
    with conn.cursor().copy(_COPY) as stream:
        for change in events:
            stream.write_row(row(change))
            count += 1
    return count
