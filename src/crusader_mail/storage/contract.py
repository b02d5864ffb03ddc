"""The storage contract: everything crusader-mail remembers, behind one set of Protocols.

Every subsystem reaches state only through these types; a store implements all of them and
:func:`crusader_mail.storage.open_store` is the only place one is constructed. The files store
(:mod:`crusader_mail.storage.files`) keeps text files in the repository.

::

    Store
    ├── roster      Roster          the readers and their consent records
    │                 iter / counts / recipients / get / candidates   reading, no lock
    │                 edit() -> RosterChanges                   one unit of change (lock or transaction)
    │                 update_many(wanted, change, match)        streaming bulk change (suppression sync)
    │                 add_many / restore / lines / tidy         import, restore an export, export, tidy
    │                 history / restore_history                 the consent history (append-only)
    │                 preferences()                             what readers chose (sparse, by mailbox)
    │                 restore_preferences                       an exported preferences file
    │                 expire_pending(before)                    erase requests never confirmed
    ├── mail        MailQueue       replies kept with a change (RosterChanges.queue_mail), sent after it
    ├── memory()    -> Memory       handled messages, reply limits, webhook event ids (a unit of change)
    ├── archive     ArchiveStore    load() -> Archive; save(archive): posts, issue records, feed cache
    ├── ledgers     LedgerStore     load(issue) / exists(issue) / send_lock(): per-issue delivery ledgers
    ├── run_lock()                  one state-changing run at a time
    ├── traces()                    where the store keeps more of a reader than the roster row
    └── close()                     let go of files, connections (``contextlib.closing``)

The roster's rules (who may become what, and the consent stamps) are pure functions in
:mod:`crusader_mail.storage.rules`; every store applies exactly those, so a reader's status
changes the same way whichever store holds them.

Units of change: ``with store.memory() as memory, store.roster.edit() as changes:`` is the lock
order everywhere (memory first, then the roster). A block that raises writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from crusader_mail.clock import Clock
from crusader_mail.models import (
    ConsentEvent,
    OutgoingMessage,
    Preferences,
    Source,
    Status,
    Subscriber,
)
from crusader_mail.storage.archive import Archive

HintOf = Callable[[str], bytes]
"""The keyed hint of an address that its tokens carry (:meth:`crusader_mail.util.tokens.Signer.hint`)."""

# --- the roster -------------------------------------------------------------------------------


class RosterChanges(Protocol):
    """The readers during one unit of change. Reads see the changes made so far; every change
    follows :mod:`crusader_mail.storage.rules` and stamps the consent record from the store's
    clock, and each call that changes a reader appends one :class:`ConsentEvent` to their
    history (:func:`crusader_mail.storage.rules.event`; ``mark`` as ``bounce`` or ``complain``),
    stored with the change. Addresses are accepted in any spelling and normalized."""

    def get(self, email: str) -> Subscriber | None: ...

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]: ...

    def add(
        self,
        email: str,
        *,
        name: str = "",
        status: Status = Status.ACTIVE,
        via: Source,
        ref: str = "",
    ) -> Subscriber: ...

    def request(self, email: str, *, name: str = "", via: Source, ref: str = "") -> Subscriber: ...

    def confirm(self, email: str, *, via: Source, ref: str = "") -> Subscriber: ...

    def unsubscribe(self, email: str, *, via: Source, ref: str = "") -> Subscriber | None: ...

    def mark(
        self, email: str, status: Status, *, via: Source, ref: str = ""
    ) -> Subscriber | None: ...

    def forget(self, email: str) -> bool:
        """Erase the reader, consent record, history, preferences, queued mail and all;
        ``True`` if they were there."""
        ...

    def preferences(self, email: str) -> Preferences:
        """The reader's preferences as they are now (the default for anyone who chose none)."""
        ...

    def set_preferences(
        self, email: str, prefs: Preferences, *, via: Source, ref: str = ""
    ) -> Subscriber | None:
        """An ACTIVE reader chooses ``prefs`` (:func:`crusader_mail.storage.rules.choose`:
        stored as settled, one event ``preferences``, ``pause`` or ``resume`` when something
        changed); the reader, whose roster row is unchanged, or ``None`` for anyone not
        active (nothing stored)."""
        ...

    def queue_mail(self, message: OutgoingMessage) -> None:
        """Keep a reply (a confirmation, welcome, goodbye) to send once this unit of change is
        stored: it is stored with the change, never before it, and sent after it (outside any
        lock) through :attr:`Store.mail`, so a reply that cannot go out never delays or undoes
        the change it answers."""
        ...


RowChange = Callable[[RosterChanges, str], None]
"""What :meth:`Roster.update_many` does to one matching reader: called with changes holding
that reader and their stored address; it may change or forget only that reader."""


@dataclass
class BulkReport:
    """What :meth:`Roster.update_many` did."""

    matched: int = 0  # readers offered to the change
    changed: int = 0  # readers it changed or forgot
    written: bool = False  # something was stored (False: nothing was touched)


class Roster(Protocol):
    """The readers and their consent records."""

    def iter(self, status: Status | None = None) -> Iterator[Subscriber]:
        """Every reader (or those with ``status``) in mailbox order (:func:`~crusader_mail.
        storage.rules.mailbox_key`, byte by byte), streamed: memory stays flat whatever the size
        of the list. Damage raises :class:`StateError` naming where."""
        ...

    def counts(self) -> dict[Status, int]:
        """How many readers have each status (every status present, zero when none)."""
        ...

    def recipients(self) -> Iterator[tuple[str, str]]:
        """(address, name) of every ACTIVE reader, in the order of :meth:`iter`, streamed without
        building readers (a send's hot loop): memory stays flat. A store may check rows less
        here than :meth:`counts` and :meth:`iter` do (a send counts the list first); a row it
        cannot read still raises :class:`StateError` naming where."""
        ...

    def get(self, email: str) -> Subscriber | None:
        """The reader with this address (any spelling of it), or ``None``."""
        ...

    def preferences(self) -> dict[str, Preferences]:
        """Every preference other than the default, by mailbox key (sparse: most readers
        choose nothing, so this stays small). It may hold readers who left: a send looks up
        the readers it streams in it."""
        ...

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The stored addresses whose ``hint_of(address)`` is ``hint`` (a token's keyed address
        hint, see :mod:`crusader_mail.util.tokens`), found without a scan per token."""
        ...

    def edit(self) -> AbstractContextManager[RosterChanges]:
        """One unit of change: stored when the block ends without an exception and something
        changed; nothing at all is stored otherwise."""
        ...

    def update_many(
        self,
        wanted: Collection[str],
        change: RowChange,
        *,
        match: Callable[[str], str] | None = None,
    ) -> BulkReport:
        """Apply ``change`` to every reader in ``wanted`` (addresses in any spelling; with
        ``match``, a reader is offered when ``match(stored address)`` is in ``wanted`` as
        given). Memory grows with the number of matches, not with the list."""
        ...

    def add_many(
        self, readers: Iterable[tuple[str, str]], *, status: Status, via: Source, ref: str
    ) -> AddReport:
        """Add each (address, name) by :func:`crusader_mail.storage.rules.add` (an import):
        readers already there keep their status. Streams: memory does not grow with the list.
        Addresses must be normalized (:func:`~crusader_mail.storage.rules.normalize_email`)."""
        ...

    def restore(self, readers: Iterable[Subscriber]) -> int:
        """Store each reader's whole record as given (a full export being restored), replacing a
        reader already there; how many were stored. No rule runs: the export is the truth. A
        mailbox given twice (in any case) raises :class:`SubscriberError` and stores nothing."""
        ...

    def lines(self) -> Iterator[str]:
        """Every reader as one CSV row of the export format (:mod:`crusader_mail.storage.rows`),
        in the order of :meth:`iter`: the full consent record."""
        ...

    def tidy(self) -> bool:
        """Put a hand-edited list in order; ``True`` if it needed it."""
        ...

    def history(self, email: str | None = None) -> Iterator[ConsentEvent]:
        """The consent history: every change the roster made to the reader of ``email`` (any
        spelling: by mailbox key), oldest first; with ``None``, every reader's, in the order
        stored. Every change appends to it (``edit``, ``update_many``, ``add_many``, ``restore``:
        one event per changed reader, as ``restore``), stored with the change and never
        rewritten; only ``forget`` and ``expire_pending`` erase a reader's events, with them."""
        ...

    def restore_history(self, events: Iterable[ConsentEvent]) -> int:
        """Append ``events`` as given (an exported history being restored, after the readers);
        how many. No rule runs and no reader changes."""
        ...

    def restore_preferences(self, chosen: Iterable[tuple[str, Preferences]]) -> int:
        """Store each (mailbox key, preferences) as given (an exported preferences file being
        restored, after the readers), replacing what that reader had (the default: none);
        how many. No rule runs and no event is appended (the history is restored on its own).
        A mailbox that is no reader on the list, or one given twice, raises
        :class:`SubscriberError` naming it (masked) and stores nothing."""
        ...

    def expire_pending(self, before: datetime) -> int:
        """Erase every reader :func:`crusader_mail.storage.rules.expired` says expired at
        ``before`` (a request never confirmed), history and queued mail with them, as ``forget``
        does; how many. Changes nothing when there is none."""
        ...


@dataclass
class AddReport:
    """What :meth:`Roster.add_many` did. Every count is of distinct readers."""

    added: int = 0
    names_filled: int = 0
    unchanged: dict[str, int] = field(default_factory=dict)  # status -> readers already there

    @property
    def kept_away(self) -> int:
        """Readers who had left and were not re-activated."""
        return sum(
            self.unchanged.get(status.value, 0)
            for status in (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED)
        )


# --- replies that go out after a change -------------------------------------------------------


@dataclass(frozen=True)
class QueuedMail:
    """A reply kept by :meth:`RosterChanges.queue_mail`, waiting to be sent."""

    id: str
    message: OutgoingMessage
    queued_at: datetime
    attempts: int = 0
    last_error: str = ""


class MailBatch(Protocol):
    """Mail claimed by one sender: nobody else sends it until the claim ends."""

    mails: list[QueuedMail]

    def done(self, mail_id: str) -> None:
        """Sent: forget it."""
        ...

    def failed(self, mail_id: str, error: str) -> None:
        """Not sent: try again later (with a growing wait); given up after ``MAIL_KEEP``."""
        ...


MAIL_KEEP = timedelta(days=7)
"""How long a reply that cannot be sent is kept and retried (a confirmation link lives as long)."""


class MailQueue(Protocol):
    """The replies waiting to be sent; every command that changes readers sends what is due."""

    def claim(self, now: datetime, limit: int = 100) -> AbstractContextManager[MailBatch]:
        """Claim up to ``limit`` mails due by ``now``; what the block did not mark ``done`` or
        ``failed`` is due again when it ends."""
        ...

    def waiting(self) -> int:
        """How many mails are waiting (due or not)."""
        ...


# --- what the inbox and the web remember ------------------------------------------------------


REPLY_WINDOW = timedelta(hours=24)
"""How long a reply time is kept: rate-limited replies go out at most once per window."""
KEEP_HANDLED = timedelta(days=400)
"""How long a handled message or webhook event is remembered."""


class Memory(Protocol):
    """Which messages and webhook events were handled, and when each address last got a
    rate-limited reply. Stored as keyed hashes only, never addresses or ids in the clear;
    entries older than ``REPLY_WINDOW`` (replies) or ``KEEP_HANDLED`` (ids) are dropped. The
    ``email`` of ``may_reply``/``replied`` is a key the service makes (a mailbox in
    :func:`~crusader_mail.storage.rules.reply_key` form, or an hourly slot such as
    ``slot-7@replies.invalid``): hash it by its mailbox key, never check it as a reader."""

    def seen(self, message_key: str) -> bool: ...

    def remember(self, message_key: str, now: datetime) -> None: ...

    def event_seen(self, event_id: str) -> bool: ...

    def remember_event(self, event_id: str, now: datetime) -> None: ...

    def may_reply(self, kind: str, email: str, now: datetime, window: timedelta) -> bool: ...

    def replied(self, kind: str, email: str, now: datetime) -> None: ...


# --- the archive ------------------------------------------------------------------------------


class ArchiveStore(Protocol):
    """Every post ever seen, the issue records and the per-feed HTTP cache."""

    def load(self) -> Archive:
        """The archive as stored now (empty when nothing is stored)."""
        ...

    def save(self, archive: Archive) -> None:
        """Store what changed since ``archive`` was loaded. Refuses (:class:`StateError`) when
        the stored archive changed meanwhile, and never leaves it half-written."""
        ...


# --- delivery ledgers -------------------------------------------------------------------------


class LedgerWriter(Protocol):
    """Appends to one issue's ledger; each record is durable before the call returns."""

    def pending(self, batch: int, readers: Sequence[int]) -> None: ...

    def accepted(self, batch: int, message_id: str | None) -> None: ...

    def failed(self, batch: int, error: str) -> None: ...

    def release(self, batches: Iterable[int]) -> None: ...


class Ledger(Protocol):
    """What one issue's delivery ledger says: readers (keyed hashes) accepted or in doubt."""

    issue_id: str
    next_batch: int
    in_doubt_batches: list[int]

    def reader_hash(self, email: str) -> int: ...

    def was_accepted(self, reader: int) -> bool: ...

    def is_in_doubt(self, reader: int) -> bool: ...

    def release_in_doubt(self) -> None: ...

    def writer(self, clock: Clock) -> AbstractContextManager[LedgerWriter]: ...


class LedgerStore(Protocol):
    """Every issue's delivery ledger (sandbox sends keep their own)."""

    def load(self, issue_id: str, *, sandbox: bool = False) -> Ledger:
        """The ledger of ``issue_id`` (an empty one when there is none yet)."""
        ...

    def exists(self, issue_id: str, *, sandbox: bool = False) -> bool: ...

    def send_lock(self) -> AbstractContextManager[None]:
        """Held for a whole send: a second send fails fast with :class:`LockTimeout`."""
        ...


# --- the store --------------------------------------------------------------------------------


class Store(Protocol):
    """Everything crusader-mail remembers (the module docstring draws it)."""

    @property
    def roster(self) -> Roster: ...

    @property
    def archive(self) -> ArchiveStore: ...

    @property
    def ledgers(self) -> LedgerStore: ...

    @property
    def mail(self) -> MailQueue: ...

    def memory(self) -> AbstractContextManager[Memory]:
        """The inbox memory for one unit of change: stored when the block ends without an
        exception (entries past their keeping time are dropped then)."""
        ...

    def run_lock(self) -> AbstractContextManager[None]:
        """Held for a whole state-changing run: one at a time."""
        ...

    def traces(self) -> list[str]:
        """Where this store may keep something of a reader besides their roster row, and
        what to do about it (for a privacy request after :meth:`RosterChanges.forget`)."""
        ...

    def close(self) -> None:
        """Let go of what the store holds open (files, database connections)."""
        ...
