"""The PostgreSQL store: everything crusader-mail remembers, in one database that any number of
``serve`` processes and the scheduled job share.

::

    readers, consent_events              roster      PgRoster        (postgres.roster, .bulk, .hints,
                                                                      .history)
    mail_queue                           mail        PgMailQueue     (postgres.mail)
    memory                               memory()    PgMemory        (postgres.memory)
    archive_posts, archive_issues, feed_cache, archive_revision
                                         archive     PgArchiveStore  (postgres.archive)
    ledgers, ledger_batches              ledgers     PgLedgerStore   (postgres.ledger)
    advisory lock (LOCK_SPACE, 3)        run_lock()
    schema_version, store_meta           the schema (postgres.schema), the hints' key check

Every write is a short transaction on the rows it changes; the locks that span a run or a send
are session-level advisory locks (:mod:`.connections`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from crusader_mail.clock import Clock
from crusader_mail.storage.contract import HintOf
from crusader_mail.storage.postgres import schema
from crusader_mail.storage.postgres.archive import PgArchiveStore
from crusader_mail.storage.postgres.connections import Database
from crusader_mail.storage.postgres.hints import Hints
from crusader_mail.storage.postgres.ledger import PgLedgerStore
from crusader_mail.storage.postgres.mail import PgMailQueue
from crusader_mail.storage.postgres.memory import PgMemories, PgMemory
from crusader_mail.storage.postgres.roster import PgRoster

RUN_LOCK = 3  # the advisory lock key of a state-changing run
RUN_LOCK_WAIT = 5.0  # seconds


class PostgresStore:
    """The store in the database at ``url``. ``secret_key`` gives the key of the memory's and
    the ledgers' hashes, asked for only when one of them is used; ``hint_of`` (the token hint
    function of that key, when one is set) keeps the roster's token hints as readers are
    written. Opening the store connects to nothing: the first use does, and checks the
    schema version."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        secret_key: Callable[[], str],
        hint_of: HintOf | None = None,
    ) -> None:
        self.clock = clock
        self._secret_key = secret_key
        self._db = Database(url, check_schema=schema.check)
        self.mail = PgMailQueue(self._db)
        self.roster = PgRoster(self._db, clock, Hints(self._db, hint_of))
        self.archive = PgArchiveStore(self._db)
        self.ledgers = PgLedgerStore(self._db, secret_key)
        self._memories = PgMemories(self._db, clock.now)

    @property
    def where(self) -> str:
        """``host:port/database``: the server, never the password."""
        return self._db.where

    def memory(self) -> AbstractContextManager[PgMemory]:
        """One transaction of the memory table (begun when first used), committed (after
        pruning) when the block ends without an exception."""
        return self._memories.unit(self._secret_key())

    def run_lock(self) -> AbstractContextManager[None]:
        """An advisory lock: a second run waits a few seconds, then fails with
        :class:`LockTimeout`."""
        return self._db.advisory_lock(RUN_LOCK, "another crusader-mail run", RUN_LOCK_WAIT)

    def traces(self) -> list[str]:
        return [
            f"delivery ledgers (PostgreSQL at {self.where}, ledger_batches) keep hashed "
            "addresses only: nothing to erase",
            f"backups and WAL archives of PostgreSQL at {self.where} keep earlier rows until "
            "they expire: purge them if the request asks",
        ]

    def close(self) -> None:
        """Close the store's connections (a lock still held is released with its connection)."""
        self._db.close()
