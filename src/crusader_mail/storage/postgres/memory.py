"""The PostgreSQL store's memory: the table ``memory`` of keyed hashes, never addresses or ids.

The hashes are the files store's (:class:`~crusader_mail.storage.files.memory.FileMemory`
computes them), so both stores remember the same keys. One unit of memory is one transaction,
begun when the unit first asks or tells something (a unit that never does, such as a one-click
unsubscribe, costs nothing): asking whether a message, an event or a reply time is known first
takes a transaction-level advisory lock on its hash, so two processes handling the same
message one after the other never both see it as new. When the block ends without an
exception, entries past their keeping time are deleted (by a unit that stored something, and
by one unit a minute otherwise) and the transaction commits; otherwise nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta

from crusader_mail.storage.contract import KEEP_HANDLED, REPLY_WINDOW
from crusader_mail.storage.files.memory import FileMemory
from crusader_mail.storage.postgres.connections import LOCK_SPACE, Connection, Database

MEMORY_LOCKS = LOCK_SPACE + 1  # the first key of the advisory locks on memory hashes
PRUNE_EVERY = timedelta(minutes=1)  # a unit that stores nothing prunes at most this often


class PgMemory:
    """The memory during one unit (one transaction, on the connection ``begin`` gives the first
    time it is needed)."""

    def __init__(self, begin: Callable[[], Connection], secret: str) -> None:
        self._begin = begin
        self._opened: Connection | None = None
        self._keys = FileMemory(secret, {})  # only its hashing is used
        self.stored = False  # something was put in this unit

    @property
    def _conn(self) -> Connection:
        if self._opened is None:
            self._opened = self._begin()
        return self._opened

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
        self.stored = True
        self._conn.execute(
            "INSERT INTO memory (kind, key, at) VALUES (%s, %s, %s) "
            "ON CONFLICT (kind, key) DO UPDATE SET at = EXCLUDED.at",
            (kind, key, now),
        )


class PgMemories:
    """The units of memory of one store, and when this process last pruned the table."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self._db = db
        self._now = now
        self._pruned: datetime | None = None

    @contextmanager
    def unit(self, secret: str) -> Iterator[PgMemory]:
        """One unit of memory: stored (after pruning at the clock's now, see the module
        docstring) when the block ends without an exception, rolled back otherwise."""
        with ExitStack() as stack:
            memory = PgMemory(lambda: stack.enter_context(self._db.transaction()), secret)
            yield memory
            now = self._now()
            if memory.stored or self._pruned is None or now - self._pruned >= PRUNE_EVERY:
                memory.prune(now)
                self._pruned = now
