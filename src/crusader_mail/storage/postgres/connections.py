"""The PostgreSQL store's connections: one URL, a few connections shared by the threads of a
process, short transactions, advisory locks, and failures as one line naming the server.

- :class:`Database` connects lazily (opening a store reads nothing). Connections have autocommit
  off and the session time zone UTC; :meth:`Database.transaction` commits when its block ends
  without an exception and rolls back otherwise. At most ``MAX_CONNECTIONS`` threads hold a
  connection at once; a thread that already holds one gets another at once (a unit of change
  inside the inbox memory's), so nested units never wait on each other.
- The first connection checks the schema version (:mod:`.schema`): a missing or older schema
  stops the command with one line saying to run ``crusader-mail db upgrade``.
- :meth:`Database.advisory_lock` holds a session-level advisory lock on its own connection:
  PostgreSQL releases it when the connection closes, so a crashed process never leaves it held.
- An error reaching the server, a lock wait that times out or a deadlock becomes a
  :class:`StateError` (:class:`LockTimeout`) naming ``host:port/database``: never the password.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from crusader_mail.errors import ConfigError, LockTimeout, StateError
from crusader_mail.util.masking import mask_addresses

Connection = psycopg.Connection[tuple[Any, ...]]
SchemaCheck = Callable[[Connection, str], None]

MAX_CONNECTIONS = 10
WAIT_FOR_CONNECTION = 30.0  # seconds a thread waits for a free connection
CONNECT_TIMEOUT = 10  # seconds, unless the URL sets connect_timeout
LOCK_SPACE = 0x43524D  # "CRM": the first key of every crusader-mail advisory lock


class Database:
    """The server at ``url`` (a ``postgresql://`` URL or a libpq connection string)."""

    def __init__(self, url: str, check_schema: SchemaCheck | None = None) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise ConfigError(
                "database_url (CRUSADER_MAIL_DATABASE_URL) is not a PostgreSQL URL: expected "
                "postgresql://user:password@host:port/database"
            ) from None
        self._url = url
        self._password = str(params.get("password") or "")
        host = str(params.get("host") or params.get("hostaddr") or "localhost")
        database = params.get("dbname") or params.get("user") or ""
        self.where = f"{host}:{params.get('port') or 5432}/{database}"
        self._extra: dict[str, Any] = (
            {} if "connect_timeout" in params else {"connect_timeout": CONNECT_TIMEOUT}
        )
        self._check_schema = check_schema
        self._checked = check_schema is None
        self._idle: list[Connection] = []
        self._guard = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._held: Counter[int] = Counter()  # connections held, by thread
        self._lent: dict[int, int] = {}  # id of a connection in use -> the generation it is of
        self._generation = 0  # close() moves it on: older connections close when given back

    # -- connections ---------------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for the block, given back (rolled back if left in a transaction) when it
        ends. A server failure inside the block becomes a one-line :class:`StateError`."""
        owner = threading.get_ident()
        with self._guard:
            nested = self._held[owner] > 0
        if not nested and not self._slots.acquire(timeout=WAIT_FOR_CONNECTION):
            raise StateError(
                f"PostgreSQL at {self.where}: every connection of this process stayed busy for "
                f"{WAIT_FOR_CONNECTION:.0f} s"
            )
        with self._guard:
            self._held[owner] += 1
        try:
            conn = self._take()
            try:
                yield conn
            except pg_errors.LockNotAvailable as error:
                raise LockTimeout(self.problem(error)) from None
            except psycopg.OperationalError as error:
                raise StateError(self.problem(error)) from None
            finally:
                self._give_back(conn)
        finally:
            with self._guard:
                self._held[owner] -= 1
                if not self._held[owner]:
                    del self._held[owner]
            if not nested:
                self._slots.release()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction: committed when the block ends without an exception,
        rolled back otherwise."""
        with self.connection() as conn:
            try:
                yield conn
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
            conn.commit()

    def _take(self) -> Connection:
        with self._guard:
            if self._idle:
                conn = self._idle.pop()
                self._lent[id(conn)] = self._generation
                return conn
            generation = self._generation
        conn = self.connect()
        if not self._checked and self._check_schema is not None:
            try:
                self._check_schema(conn, self.where)
                conn.rollback()
            except BaseException:
                conn.close()
                raise
            self._checked = True
        with self._guard:
            self._lent[id(conn)] = generation
        return conn

    def connect(self) -> Connection:
        """A new connection (autocommit off, time zone UTC); one line naming the server when
        there is none to be had."""
        try:
            conn = psycopg.connect(self._url, autocommit=False, **self._extra)
            conn.execute("SET TIME ZONE 'UTC'")
            conn.commit()
        except psycopg.OperationalError as error:
            raise StateError(f"cannot connect to {self.problem(error)}") from None
        return conn

    def _give_back(self, conn: Connection) -> None:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.rollback()
            except psycopg.Error:
                conn.close()
        with self._guard:
            current = self._lent.pop(id(conn)) == self._generation
            if current and not conn.closed and len(self._idle) < MAX_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close every idle connection; those in use close when they are given back. A later
        use connects again."""
        with self._guard:
            self._generation += 1
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def vacuum(self, table: str) -> None:
        """``VACUUM (ANALYZE)`` ``table`` on a connection of its own (it cannot run in a
        transaction): after a large rewrite of a column, so its dead index entries go and the
        planner's statistics are new."""
        conn = self.connect()
        try:
            conn.autocommit = True
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        except psycopg.OperationalError as error:
            raise StateError(self.problem(error)) from None
        finally:
            conn.close()

    # -- locks ---------------------------------------------------------------------------------

    @contextmanager
    def advisory_lock(self, key: int, holder: str, timeout: float) -> Iterator[None]:
        """Hold the session-level advisory lock ``(LOCK_SPACE, key)`` for the block on a
        connection of its own; after ``timeout`` seconds of waiting, :class:`LockTimeout`
        saying ``holder`` has it."""
        with self.connection() as conn:
            try:
                conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{timeout}s"])
                conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, key))
                conn.commit()
            except pg_errors.LockNotAvailable:
                conn.rollback()
                raise LockTimeout(
                    f"{holder} holds the lock in PostgreSQL at {self.where}; try again when it "
                    "is done"
                ) from None
            try:
                yield
            finally:
                if not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, key))
                    conn.commit()

    # -- messages ------------------------------------------------------------------------------

    def problem(self, error: psycopg.Error) -> str:
        """``PostgreSQL at host:port/db: reason``: the first line of the server's reason, with
        the password and any address masked."""
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        reason = text.rsplit(": ", 1)[-1].strip() if text.startswith("connection") else text
        if self._password:
            reason = reason.replace(self._password, "***")
        return f"PostgreSQL at {self.where}: {mask_addresses(reason)}"
