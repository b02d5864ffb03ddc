"""The PostgreSQL store's delivery ledgers: ``ledgers`` (one row per issue: salt and key check)
and ``ledger_batches`` (one row per batch: its state, its readers' keyed hashes).

The semantics are the files store's (:mod:`crusader_mail.storage.files.ledger`), and so is the
code that reads them: the same keyed hashes, the same ``key_check`` refusing a changed
``secret_key``, the same index of accepted and in-doubt readers, and the same versions: the
ledger's row keeps the version it was begun with (2: the mailbox key is hashed; 1: the address
with its domain lowercased) and it is hashed that way until the issue is sent. Each record is one committed
transaction before the call returns: ``pending`` upserts the batch with its readers (8-byte
big-endian hashes), ``accepted``, ``failed`` and ``released`` update its state. The send lock is
a session-level advisory lock: a second send fails fast, and a crashed one lets go with its
connection.
"""

from __future__ import annotations

import hmac
import secrets
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from crusader_mail.clock import Clock
from crusader_mail.errors import StateError
from crusader_mail.storage.files.ledger import Ledger, LedgerState, _Batch, _derive, _key_check
from crusader_mail.storage.postgres.connections import Connection, Database

SEND_LOCK = 2  # the advisory lock key of a send
SEND_LOCK_WAIT = 2.0  # seconds


def _pack(readers: Iterable[int]) -> bytes:
    packed = array("Q", readers)
    if sys.byteorder == "little":
        packed.byteswap()
    return packed.tobytes()


def _unpack(data: bytes) -> array[int]:
    readers = array("Q", data)
    if sys.byteorder == "little":
        readers.byteswap()
    return readers


@dataclass
class PgLedger(Ledger):
    """One issue's ledger in the tables (``path`` only names it in messages)."""

    db: Database | None = None
    sandbox: bool = False

    @contextmanager
    def writer(self, clock: Clock) -> Iterator[PgLedgerWriter]:  # type: ignore[override]
        """Create the ledger's row when it is new, then append batch records. The caller holds
        the send lock."""
        if self.db is None:
            raise StateError(f"{self.path}: this ledger has no database to write to")
        with self.db.connection() as conn:
            conn.execute(
                "INSERT INTO ledgers (issue_id, sandbox, version, salt, key_check, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    self.issue_id,
                    self.sandbox,
                    self.version,
                    self.salt,
                    _key_check(self._key),
                    clock.now(),
                ),
            )
            row = conn.execute(
                "SELECT salt FROM ledgers WHERE issue_id = %s AND sandbox = %s",
                (self.issue_id, self.sandbox),
            ).fetchone()
            conn.commit()
            if row is None or row[0] != self.salt:
                raise StateError(
                    f"{self.path}: another send started this ledger after it was loaded; run again"
                )
            self.exists = True
            yield PgLedgerWriter(conn, self, clock)


class PgLedgerWriter:
    """Records batches of one ledger, each committed before the call returns."""

    def __init__(self, conn: Connection, ledger: PgLedger, clock: Clock) -> None:
        self._conn = conn
        self._ledger = ledger
        self._clock = clock

    def pending(self, batch: int, readers: Sequence[int]) -> None:
        ledger = self._ledger
        self._conn.execute(
            "INSERT INTO ledger_batches (issue_id, sandbox, batch, state, readers, at) "
            "VALUES (%s, %s, %s, 'pending', %s, %s) ON CONFLICT (issue_id, sandbox, batch) "
            "DO UPDATE SET state = 'pending', readers = EXCLUDED.readers, message_id = NULL, "
            "error = NULL, at = EXCLUDED.at",
            (ledger.issue_id, ledger.sandbox, batch, _pack(readers), self._clock.now()),
        )
        self._conn.commit()

    def accepted(self, batch: int, message_id: str | None) -> None:
        self._state(batch, "accepted", message_id=message_id)

    def failed(self, batch: int, error: str) -> None:
        self._state(batch, "failed", error=error)

    def release(self, batches: Iterable[int]) -> None:
        for batch in batches:
            self._state(batch, "released")

    def _state(
        self, batch: int, state: LedgerState, *, message_id: str | None = None, error: str = ""
    ) -> None:
        ledger = self._ledger
        done = self._conn.execute(
            "UPDATE ledger_batches SET state = %s, at = %s, message_id = %s, error = %s "
            "WHERE issue_id = %s AND sandbox = %s AND batch = %s",
            (
                state,
                self._clock.now(),
                message_id,
                error or None,
                ledger.issue_id,
                ledger.sandbox,
                batch,
            ),
        )
        if done.rowcount != 1:
            self._conn.rollback()
            raise StateError(f"{ledger.path}: {state} record for unknown batch {batch}")
        self._conn.commit()


class PgLedgerStore:
    """Every issue's ledger in the tables (see the module docstring). ``secret_key`` gives the
    key of the readers' hashes when a ledger is read."""

    def __init__(self, db: Database, secret_key: Callable[[], str]) -> None:
        self._db = db
        self._secret_key = secret_key

    def _name(self, issue_id: str, sandbox: bool) -> Path:
        kind = "sandbox ledger" if sandbox else "ledger"
        return Path(f"PostgreSQL at {self._db.where}, {kind} of issue {issue_id}")

    def exists(self, issue_id: str, *, sandbox: bool = False) -> bool:
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT 1 FROM ledgers WHERE issue_id = %s AND sandbox = %s", (issue_id, sandbox)
            ).fetchone()
        return row is not None

    def load(self, issue_id: str, *, sandbox: bool = False) -> PgLedger:
        """The ledger of ``issue_id`` (an empty one, with a new salt, when there is none)."""
        secret = self._secret_key()
        path = self._name(issue_id, sandbox)
        with self._db.transaction() as conn:
            head = conn.execute(
                "SELECT salt, key_check, version FROM ledgers WHERE issue_id = %s AND sandbox = %s",
                (issue_id, sandbox),
            ).fetchone()
            rows = conn.execute(
                "SELECT batch, state, readers FROM ledger_batches "
                "WHERE issue_id = %s AND sandbox = %s",
                (issue_id, sandbox),
            ).fetchall()
        if head is None:
            salt = secrets.token_hex(16)
            return PgLedger(
                path, issue_id, salt, _derive(secret, salt), db=self._db, sandbox=sandbox
            )
        salt, key_check, version = str(head[0]), str(head[1]), int(head[2])
        key = _derive(secret, salt)
        if not hmac.compare_digest(_key_check(key), key_check):
            raise StateError(
                f"{path}: this ledger was written with a different secret_key; restore that "
                "secret_key (with another one every reader would look new and get the issue again)"
            )
        ledger = PgLedger(
            path, issue_id, salt, key, exists=True, version=version, db=self._db, sandbox=sandbox
        )
        ledger._index(
            {
                int(batch): _Batch(_unpack(bytes(readers)), cast(LedgerState, state))
                for batch, state, readers in rows
            }
        )
        return ledger

    def send_lock(self) -> AbstractContextManager[None]:
        """Held for a whole send: a second send fails fast with :class:`LockTimeout`."""
        return self._db.advisory_lock(SEND_LOCK, "another send", SEND_LOCK_WAIT)
