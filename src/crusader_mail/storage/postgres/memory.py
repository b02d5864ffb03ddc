"""The PostgreSQL store's memory: the table ``memory`` of keyed hashes, never addresses or ids.

The hashes are the files store's (:class:`~crusader_mail.storage.files.memory.FileMemory`
computes them), so both stores remember the same keys. One unit of memory is one transaction:
asking whether a message, an event or a reply time is known first takes a transaction-level
advisory lock on its hash, so two processes handling the same message one after the other
never both see it as new. When the block ends without an exception, entries past their keeping
time are deleted and the transaction commits; otherwise nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from crusader_mail.storage.contract import KEEP_HANDLED, REPLY_WINDOW
from crusader_mail.storage.files.memory import FileMemory
from crusader_mail.storage.postgres.connections import LOCK_SPACE, Connection, Database

MEMORY_LOCKS = LOCK_SPACE + 1  # the first key of the advisory locks on memory hashes


class PgMemory:
    """The memory during one unit (one transaction on ``conn``)."""

    def __init__(self, conn: Connection, secret: str) -> None:
        self._conn = conn
        self._keys = FileMemory(secret, {})  # only its hashing is used

    def seen(self, message_key: str) -> bool:
        return self._known("message", self._keys._hash("message", message_key)) is not None

    def remember(self, message_key: str, now: datetime) -> None:
        self._put("message", self._keys._hash("message", message_key), now)

    def event_seen(self, event_id: str) -> bool:
        return self._known("event", self._keys._hash("event", event_id)) is not None

    def remember_event(self, event_id: str, now: datetime) -> None:
        self._put("event", self._keys._hash("event", event_id), now)

    def may_reply(self, kind: str, email: str, now: datetime, window: timedelta) -> bool:
        last = self._known("reply", self._keys._reply_key(kind, email))
        return last is None or now - last >= window

    def replied(self, kind: str, email: str, now: datetime) -> None:
        self._put("reply", self._keys._reply_key(kind, email), now)

    def prune(self, now: datetime) -> None:
        """Delete reply times older than ``REPLY_WINDOW``, handled ids older than
        ``KEEP_HANDLED``."""
        self._conn.execute(
            "DELETE FROM memory WHERE (kind = 'reply' AND at <= %s) "
            "OR (kind IN ('message', 'event') AND at <= %s)",
            (now - REPLY_WINDOW, now - KEEP_HANDLED),
        )

    def _known(self, kind: str, key: str) -> datetime | None:
        """When ``key`` was stored (``None``: never), its advisory lock held from now on."""
        self._conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (MEMORY_LOCKS, f"{kind}:{key}")
        )
        row = self._conn.execute(
            "SELECT at FROM memory WHERE kind = %s AND key = %s", (kind, key)
        ).fetchone()
        return row[0] if row is not None else None

    def _put(self, kind: str, key: str, now: datetime) -> None:
        self._conn.execute(
            "INSERT INTO memory (kind, key, at) VALUES (%s, %s, %s) "
            "ON CONFLICT (kind, key) DO UPDATE SET at = EXCLUDED.at",
            (kind, key, now),
        )


@contextmanager
def open_memory(db: Database, secret: str, now: Callable[[], datetime]) -> Iterator[PgMemory]:
    """One unit of memory: stored (after pruning at ``now()``) when the block ends without an
    exception, rolled back otherwise."""
    with db.transaction() as conn:
        memory = PgMemory(conn, secret)
        yield memory
        memory.prune(now())
