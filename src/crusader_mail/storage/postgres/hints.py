"""Token hints in the roster: each reader's keyed address hint (:meth:`Signer.hint
<crusader_mail.util.tokens.Signer.hint>`) in the indexed column ``readers.hint``, so finding the
reader a token was made for is one index lookup.

A hint depends on ``secret_key``. ``store_meta`` keeps ``hint_check``, the hint of
:data:`CHECK_ADDRESS` (a check value, never the key), and every hint in the table was made with
the function whose check that is. A row written without a hint function (no ``secret_key`` set)
gets ``NULL``, filled in the next time someone asks for candidates. When the check differs
(``secret_key`` changed), every hint is cleared and computed again with the new function, in
chunks of committed work, so an interrupted rehash simply goes on next time.
"""

from __future__ import annotations

import threading

from crusader_mail.storage.contract import HintOf
from crusader_mail.storage.postgres.connections import Connection, Database

CHECK_ADDRESS = "hint-check@crusader-mail.invalid"
FILL_CHUNK = 10_000
LOCK_WAIT = "10s"  # a rehash never waits for ever on rows another unit holds


class Hints:
    """The hints of one store. ``own`` is the hint function of the store's ``secret_key``
    (``None`` when none is set)."""

    def __init__(self, db: Database, own: HintOf | None) -> None:
        self._db = db
        self._own = own
        self._known: bytes | None = None  # the stored check, as last seen by this process
        self._guard = threading.Lock()

    def for_write(self) -> HintOf | None:
        """The function whose hints rows written now get (``None``: they get ``NULL``). Call it
        before locking any row: the first call may bring the stored hints up to date."""
        own = self._own
        if own is None:
            return None
        if self._known is None:
            self.prepare(own)
        return own if self._known == own(CHECK_ADDRESS) else None

    def prepare(self, hint_of: HintOf) -> None:
        """Make every committed row's hint ``hint_of``'s: recompute them all when the stored
        check is another function's, then fill the rows that have none."""
        check = hint_of(CHECK_ADDRESS)
        if self._known != check:
            with self._guard:  # one rehash per process at a time
                if self._known != check:
                    self._adopt(check)
        self._fill(hint_of)

    def fill(self, conn: Connection, hint_of: HintOf) -> None:
        """Fill the rows without a hint that ``conn``'s transaction sees (its own new rows)."""
        rows = conn.execute(
            "SELECT mailbox, email FROM readers WHERE hint IS NULL FOR UPDATE SKIP LOCKED"
        ).fetchall()
        _store(conn, rows, hint_of)

    def _adopt(self, check: bytes) -> None:
        with self._db.transaction() as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_WAIT])
            row = conn.execute(
                "SELECT value FROM store_meta WHERE key = 'hint_check' FOR UPDATE"
            ).fetchone()
            if row is None or bytes(row[0]) != check:
                if row is not None:
                    conn.execute("UPDATE readers SET hint = NULL WHERE hint IS NOT NULL")
                conn.execute(
                    "INSERT INTO store_meta (key, value) VALUES ('hint_check', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    [check],
                )
        self._known = check

    def _fill(self, hint_of: HintOf) -> None:
        while True:
            with self._db.transaction() as conn:
                rows = conn.execute(
                    "SELECT mailbox, email FROM readers WHERE hint IS NULL "
                    "LIMIT %s FOR UPDATE SKIP LOCKED",
                    [FILL_CHUNK],
                ).fetchall()
                _store(conn, rows, hint_of)
            if len(rows) < FILL_CHUNK:
                return


def _store(conn: Connection, rows: list[tuple[str, str]], hint_of: HintOf) -> None:
    if not rows:
        return
    conn.execute(
        "UPDATE readers SET hint = given.hint "
        "FROM unnest(%s::text[], %s::bytea[]) AS given (mailbox, hint) "
        "WHERE readers.mailbox = given.mailbox",
        ([mailbox for mailbox, _email in rows], [hint_of(email) for _mailbox, email in rows]),
    )
