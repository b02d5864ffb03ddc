"""The files store: everything crusader-mail remembers, as text files in the repository.

::

    subscribers_dir/subscribers.csv      roster      SubscriberList   (files.subscribers)
    subscribers_dir/.subscribers-index/  what its writers know of the list (files.list_index;
                                         never committed, rebuilt from the list when stale)
    subscribers_dir/consent-log.csv      roster.history()  ConsentLog (files.consent_log)
    subscribers_dir/pending-mail.jsonl   mail        FileMailQueue    (files.mail)
    state_dir/inbox.json                 memory()    FileMemory       (files.memory)
    state_dir/archive.jsonl, issues.jsonl, feeds.json
                                         archive     FileArchiveStore (files.archive)
    state_dir/ledger/<issue>.jsonl       ledgers     FileLedgerStore  (files.ledger)
    state_dir/run.lock                   run_lock()

Every file is written atomically under its own lock (:mod:`crusader_mail.util.statefile`); the
temporary files a killed write leaves are removed by the next write of that file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from crusader_mail.clock import Clock
from crusader_mail.storage.files.archive import FileArchiveStore
from crusader_mail.storage.files.consent_log import LOG_FILE
from crusader_mail.storage.files.ledger import FileLedgerStore, ledger_dir
from crusader_mail.storage.files.mail import MAIL_FILE, FileMailQueue
from crusader_mail.storage.files.memory import FileMemory, open_memory
from crusader_mail.storage.files.subscribers import LIST_FILE, SubscriberList
from crusader_mail.util.statefile import leftovers, locked

MEMORY_FILE = "inbox.json"
RUN_LOCK_TIMEOUT = 5.0


class FilesStore:
    """The store in ``state_dir`` and ``subscribers_dir``. ``secret_key`` gives the key of the
    hashes in the memory and the ledgers, asked for only when one of them is opened (it raises
    :class:`ConfigError` when none is set; the roster and the archive need no secret)."""

    def __init__(
        self,
        state_dir: Path,
        subscribers_dir: Path,
        clock: Clock,
        secret_key: Callable[[], str],
    ) -> None:
        self.state_dir = state_dir
        self.clock = clock
        self._secret_key = secret_key
        self.mail = FileMailQueue(subscribers_dir, clock.now)
        self.roster = SubscriberList(subscribers_dir, clock, self.mail)
        self.archive = FileArchiveStore(state_dir)
        self.ledgers = FileLedgerStore(state_dir, secret_key)

    def memory(self) -> AbstractContextManager[FileMemory]:
        """``state_dir/inbox.json``, locked for the block, pruned and saved when it ends
        without an exception."""
        return open_memory(self.state_dir / MEMORY_FILE, self._secret_key(), self.clock.now)

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        """``state_dir/run.lock``: a second run waits a few seconds, then fails with
        :class:`LockTimeout`."""
        with locked(self.state_dir / "run", timeout=RUN_LOCK_TIMEOUT):
            yield

    def traces(self) -> list[str]:
        """The ledgers and git history; and the temporary copies of the list, the consent log
        or the mail queue that killed writers left: those this store's changes erased, and any
        still there."""
        found = []
        if self.roster.erased:
            names = ", ".join(str(path) for path in self.roster.erased)
            found.append(
                f"{_copies(len(self.roster.erased))} of {LIST_FILE} or {LOG_FILE} left by a "
                f"killed write (each a full copy of that file): erased: {names}"
            )
        remaining = [
            *leftovers(self.roster.path),
            *leftovers(self.roster.log.path),
            *leftovers(self.mail.path),
        ]
        if remaining:
            found.append(
                f"{_copies(len(remaining))} left by a killed write may hold the address: "
                f"{', '.join(map(str, remaining))}: delete them (the next change of that file "
                "does)"
            )
        return [
            *found,
            f"delivery ledgers ({ledger_dir(self.state_dir)}) keep hashed addresses only: "
            "nothing to erase",
            f"git history keeps earlier versions of {LIST_FILE}, {LOG_FILE} and {MAIL_FILE}: "
            "rewrite it if the request asks",
        ]

    def close(self) -> None:
        """Nothing stays open between calls: every file is opened and closed by each call."""


def _copies(count: int) -> str:
    return f"{count} temporary cop{'y' if count == 1 else 'ies'}"
