"""Token hints in the roster, so finding the reader a token was made for is one index lookup.

Two indexed columns of ``readers`` keep a reader's keyed address hints (:mod:`crusader_mail.util.
tokens`): ``hint`` the one tokens carry now (:meth:`Signer.hint
<crusader_mail.util.tokens.Signer.hint>`, of the mailbox key), ``old_hint`` the one tokens mailed
before carry (:meth:`Signer.old_hint <crusader_mail.util.tokens.Signer.old_hint>`). A hint
function that gives no hint (``b""``) for the all-lowercase :data:`CHECK_ADDRESS` is of the old
form: its hint differs from the new one only for an address that is not all lowercase, so
``old_hint`` is kept for those rows alone (``email <> mailbox``) and the others never need one.
An empty hint finds nobody.

A hint depends on ``secret_key``. ``store_meta`` keeps, per column, the hint of a check address
(a check value, never the key), and every hint in that column was made with the function whose
check that is. A row written without a hint function gets ``NULL``, filled in the next time
someone asks for candidates of that form (rows are written with their new-form hint when the
store has a ``secret_key``; old-form hints are only ever filled in). When a check differs
(``secret_key`` changed), that column is cleared and computed again with the new function, in
chunks of committed work, so an interrupted rehash simply goes on next time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any, LiteralString

from psycopg import sql

from crusader_mail.storage.contract import HintOf
from crusader_mail.storage.postgres.connections import Connection, Database
from crusader_mail.storage.postgres.records import COLUMNS, NAMES

CHECK_ADDRESS = "hint-check@crusader-mail.invalid"
OLD_CHECK_ADDRESS = "Hint-Check@crusader-mail.invalid"  # not all lowercase: has an old form
FILL_CHUNK = 10_000
LOCK_WAIT = "10s"  # a rehash never waits for ever on rows another unit holds


@dataclass(frozen=True)
class Column:
    """One hint column: its check's key in ``store_meta`` and check address, and its SQL."""

    name: str
    meta: str
    check_address: str
    lookup: LiteralString  # (mailbox, email, lacking): rows with a hint, and rows without one
    missing: LiteralString  # (mailbox, email) of the rows without a hint, by mailbox: the
    # partial index (also with stale statistics after a fill), and locks taken in one order
    put: LiteralString  # set the hints of (mailboxes, hints)
    clear: LiteralString  # forget every hint

    @cached_property
    def locked(self) -> bytes:
        """``lookup`` for a unit of change: (mailbox, false, :data:`~.records.COLUMNS`) of the
        rows with the hint, locked, then (mailbox, true, email, NULL, ...) of the rows
        without one, as in ``lookup``."""
        return _LOCKED.format(
            missing=sql.SQL(self.missing),
            name=sql.Identifier(self.name),
            columns=COLUMNS,
            nulls=sql.SQL(", ").join([sql.NULL] * (len(NAMES) - 1)),
        ).as_bytes()

    def check(self, hint_of: HintOf) -> bytes:
        return hint_of(self.check_address)


_LOCKED = sql.SQL(
    "WITH lacking AS ({missing} LIMIT %s FOR UPDATE SKIP LOCKED), "
    "found AS (SELECT mailbox, {columns} FROM readers WHERE {name} = %s FOR UPDATE) "
    "SELECT mailbox, false, {columns} FROM found "
    "UNION ALL SELECT mailbox, true, email, {nulls} FROM lacking"
)

HINT = Column(
    "hint",
    "hint_check",
    CHECK_ADDRESS,
    lookup="WITH lacking AS (SELECT mailbox, email FROM readers WHERE hint IS NULL "
    "ORDER BY mailbox LIMIT %s FOR UPDATE SKIP LOCKED) SELECT mailbox, email, true FROM lacking "
    "UNION ALL SELECT mailbox, email, false FROM readers WHERE hint = %s",
    missing="SELECT mailbox, email FROM readers WHERE hint IS NULL ORDER BY mailbox",
    put="UPDATE readers SET hint = given.hint "
    "FROM unnest(%s::text[], %s::bytea[]) AS given (mailbox, hint) "
    "WHERE readers.mailbox = given.mailbox",
    clear="UPDATE readers SET hint = NULL WHERE hint IS NOT NULL",
)
OLD_HINT = Column(
    "old_hint",
    "old_hint_check",
    OLD_CHECK_ADDRESS,
    lookup="WITH lacking AS (SELECT mailbox, email FROM readers WHERE old_hint IS NULL "
    "AND email <> mailbox ORDER BY mailbox LIMIT %s FOR UPDATE SKIP LOCKED) "
    "SELECT mailbox, email, true "
    "FROM lacking UNION ALL SELECT mailbox, email, false FROM readers WHERE old_hint = %s",
    missing="SELECT mailbox, email FROM readers WHERE old_hint IS NULL AND email <> mailbox "
    "ORDER BY mailbox",
    put="UPDATE readers SET old_hint = given.hint "
    "FROM unnest(%s::text[], %s::bytea[]) AS given (mailbox, hint) "
    "WHERE readers.mailbox = given.mailbox",
    clear="UPDATE readers SET old_hint = NULL WHERE old_hint IS NOT NULL",
)


def column_of(hint_of: HintOf) -> Column:
    """The column that keeps ``hint_of``'s hints (see the module docstring)."""
    return OLD_HINT if hint_of(CHECK_ADDRESS) == b"" else HINT


class Hints:
    """The hints of one store. ``own`` is the hint function of the store's ``secret_key``
    (``None`` when none is set): rows written get its hints."""

    def __init__(self, db: Database, own: HintOf | None) -> None:
        self._db = db
        self._own = own
        self._known: dict[str, bytes] = {}  # column -> its stored check, as last seen here
        self._guard = threading.Lock()

    def for_write(self) -> HintOf | None:
        """The function whose hints rows written now get in ``hint`` (``None``: they get
        ``NULL``). Call it before locking any row: the first call may clear hints made with
        another ``secret_key``."""
        own = self._own
        if own is None:
            return None
        self._adopt_once(HINT, own)
        return own if self._known.get(HINT.name) == HINT.check(own) else None

    def find(self, conn: Connection, hint: bytes, hint_of: HintOf) -> list[str]:
        """The addresses ``conn``'s transaction sees whose ``hint_of`` hint is ``hint``, by
        mailbox. One query looks them up and takes the rows still without a hint (locked,
        those another unit holds skipped: it fills them), which are filled in then; a backlog
        bigger than one chunk (a new ``secret_key``) is filled in committed chunks first."""
        return [email for email, _row in self._find(conn, hint, hint_of, locked=False)]

    def find_locked(
        self, conn: Connection, hint: bytes, hint_of: HintOf
    ) -> list[tuple[str, tuple[Any, ...] | None]]:
        """:meth:`find` for a unit of change, in the same one query: each address with its
        row of :data:`~.records.COLUMNS`, locked (``FOR UPDATE``) and read whole when the
        index found it, ``None`` when its hint was only filled in now."""
        return self._find(conn, hint, hint_of, locked=True)

    def _find(
        self, conn: Connection, hint: bytes, hint_of: HintOf, *, locked: bool
    ) -> list[tuple[str, tuple[Any, ...] | None]]:
        if not hint:
            return []
        column = column_of(hint_of)
        self._adopt_once(column, hint_of)
        rows: list[tuple[str, str, bool, tuple[Any, ...] | None]]
        while True:
            if locked:  # (mailbox, lacking, email, the other columns)
                rows = [
                    (row[0], row[2], row[1], row[2:])
                    for row in conn.execute(column.locked, [FILL_CHUNK, hint])
                ]
            else:
                rows = [
                    (mailbox, email, without, None)
                    for mailbox, email, without in conn.execute(column.lookup, [FILL_CHUNK, hint])
                ]
            lacking = [(mailbox, email) for mailbox, email, without, _row in rows if without]
            _store(conn, column, lacking, hint_of)
            if len(lacking) < FILL_CHUNK:
                break
            while self._fill(column, hint_of, FILL_CHUNK) == FILL_CHUNK:
                pass
            self._db.vacuum("readers")  # the backlog's index entries go, the planner learns
        found: list[tuple[str, str, tuple[Any, ...] | None]] = [
            (mailbox, email, row) for mailbox, email, without, row in rows if not without
        ]
        found += [(mailbox, email, None) for mailbox, email in lacking if hint_of(email) == hint]
        return [(email, row) for _mailbox, email, row in sorted(found, key=lambda f: f[0])]

    def _adopt_once(self, column: Column, hint_of: HintOf) -> None:
        """Make ``hint_of`` the function of ``column`` (clearing another key's hints)."""
        check = column.check(hint_of)
        if self._known.get(column.name) != check:
            with self._guard:  # one rehash per process at a time
                if self._known.get(column.name) != check:
                    self._adopt(column, check)

    def _adopt(self, column: Column, check: bytes) -> None:
        with self._db.transaction() as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_WAIT])
            row = conn.execute(
                "SELECT value FROM store_meta WHERE key = %s FOR UPDATE", [column.meta]
            ).fetchone()
            if row is None or bytes(row[0]) != check:
                if row is not None:
                    conn.execute(column.clear)
                conn.execute(
                    "INSERT INTO store_meta (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    [column.meta, check],
                )
        self._known[column.name] = check

    def _fill(self, column: Column, hint_of: HintOf, limit: int) -> int:
        """Fill up to ``limit`` committed rows without a hint, in a transaction of its own;
        how many it found."""
        with self._db.transaction() as conn:
            rows = _missing(conn, column, limit)
            _store(conn, column, rows, hint_of)
        return len(rows)


def _missing(conn: Connection, column: Column, limit: int) -> list[tuple[str, str]]:
    """(mailbox, email) of up to ``limit`` rows ``column`` has no hint for, locked (rows
    another unit holds are skipped: it fills them)."""
    return conn.execute(column.missing + " LIMIT %s FOR UPDATE SKIP LOCKED", [limit]).fetchall()


def _store(conn: Connection, column: Column, rows: list[tuple[str, str]], hint_of: HintOf) -> None:
    if not rows:
        return
    conn.execute(
        column.put,
        ([mailbox for mailbox, _email in rows], [hint_of(email) for _mailbox, email in rows]),
    )
