"""The subscriber list: who gets the newsletter, and the record of their consent.

Contract (issue 4, ``contracts.md``)::

    normalize_email(raw) -> str                       # email-validator, no DNS; InvalidAddress
    readers = SubscriberList(settings.subscribers_dir, clock)
    readers.iter(Status.ACTIVE)   -> Iterator[Subscriber]   # streams the file, constant memory
    readers.counts() / readers.get(email)
    with readers.edit() as roster:                    # lock; load; yield; save on success only
        roster.add / request / confirm / unsubscribe / mark / forget
    readers.update_many(wanted, change, match=None)   # lock; stream; change matching rows only

``edit`` holds the whole list in memory (fine for a few interactive changes). ``update_many``
is for bulk changes on a big list (the suppression sync): it streams the file row by row into
a temporary file and renames it, so its memory grows with the number of changes, not readers;
each matching reader is changed through the same :class:`Roster` methods (a roster holding
just that row), so the status rules and consent stamps are the ones ``edit`` applies.

The file format lives in :mod:`crusader_mail.storage.files.list_format`. Status changes:

- ``add`` puts a *new* reader on the list with the given status (cli, import). A reader already
  there keeps their status; only a missing name is filled in. A reader who left is never
  re-activated by an operator or an import: only their own ``request`` brings them back.
- ``request`` (double opt-in, step 1): new, unsubscribed, bounced or complained -> ``pending``;
  ``pending`` stays pending; ``active`` stays active (nothing changes).
- ``confirm``: ``pending`` -> ``active``; ``active`` is returned unchanged (a replayed
  confirmation); anything else raises :class:`SubscriberError` (a reader who left cannot be
  confirmed back by an old token).
- ``unsubscribe``: any status -> ``unsubscribed``, at once; idempotent; ``None`` if unknown.
- ``mark(bounced|complained)``: a pending or active reader takes that status, a bounced one can
  become complained; a reader who already left keeps their status. ``None`` if unknown.
- ``forget`` erases the row: no trace of the address is left in the list.

Every change stamps the consent record from the injected clock (whole seconds, UTC):
``subscribed_at/via`` when someone joins or rejoins, ``confirmed_at/via`` when they become
active, ``left_at/via`` when they leave, ``ref`` (message id, file name, request id) and
``updated_at`` on every change. A call that changes nothing writes nothing.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crusader_mail.clock import Clock
from crusader_mail.errors import StateError, SubscriberError
from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.storage.files.list_format import (
    MAX_NAME,
    MAX_REF,
    build,
    clean_text,
    file_head,
    format_row,
    normalize_email,
    parse_line,
    render,
    row_email,
    scan,
)
from crusader_mail.util.masking import mask_email
from crusader_mail.util.statefile import atomic_write, atomic_writer, locked

__all__ = [
    "LIST_FILE",
    "BulkReport",
    "ImportReport",
    "Roster",
    "RowChange",
    "SubscriberList",
    "import_readers",
    "normalize_email",
    "other_traces",
]

LIST_FILE = "subscribers.csv"
LEFT = frozenset({Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED})

RowChange = Callable[["Roster", str], None]
"""What :meth:`SubscriberList.update_many` does to one matching reader: called with a roster
holding that reader and their stored address; it may change or forget only that reader."""


@dataclass
class BulkReport:
    """What :meth:`SubscriberList.update_many` did."""

    matched: int = 0  # readers offered to the change
    changed: int = 0  # readers it changed or forgot
    written: bool = False  # the file was replaced (False: not a byte of it was touched)


class SubscriberList:
    """The list file ``folder/subscribers.csv``. Reading streams it; changes go through
    :meth:`edit`. Readers need no lock: a save replaces the file in one rename."""

    def __init__(self, folder: Path, clock: Clock) -> None:
        self.folder = folder
        self.path = folder / LIST_FILE
        self.clock = clock

    def iter(self, status: Status | None = None) -> Iterator[Subscriber]:
        """Every reader (or those with ``status``) in address order, one row at a time.

        Memory stays flat whatever the size of the list. A damaged row raises
        :class:`StateError` naming the line when the stream reaches it."""
        for _line_no, _line, fields, row_status in scan(self.path):
            if status is None or row_status == status:
                yield build(fields, row_status)

    def lines(self) -> Iterator[str]:
        """The checked row lines as stored (for ``export``), in order."""
        for _line_no, line, _fields, _status in scan(self.path):
            yield line

    def counts(self) -> dict[Status, int]:
        """How many readers have each status (every status present, zero when none)."""
        counts = dict.fromkeys(Status, 0)
        for _line_no, _line, _fields, status in scan(self.path):
            counts[status] += 1
        return counts

    def get(self, email: str) -> Subscriber | None:
        """The reader with this address (any spelling of it), or ``None``."""
        try:
            key = normalize_email(email)
        except SubscriberError:
            return None
        for _line_no, _line, fields, status in scan(self.path):
            if fields[0] == key:
                return build(fields, status)
            if fields[0] > key:
                break
        return None

    @contextmanager
    def edit(self) -> Iterator[Roster]:
        """Lock the list, load it, yield a :class:`Roster`, and save it atomically when the
        block ends without an exception and something changed. A damaged file raises
        :class:`StateError` before the block runs and is left as it is."""
        with locked(self.path), self._loaded() as roster:
            yield roster

    def update_many(
        self,
        wanted: Collection[str],
        change: RowChange,
        *,
        match: Callable[[str], str] | None = None,
    ) -> BulkReport:
        """Apply ``change`` to every reader in ``wanted``, streaming: memory grows with the
        number of matches, not with the list.

        Without ``match``, ``wanted`` holds addresses in any spelling (normalized here; one
        that is not an address matches nobody). With ``match``, a reader is offered when
        ``match(stored address)`` is in ``wanted`` as given (``str.lower``: ignore case).
        ``change(roster, email)`` gets a :class:`Roster` holding just that reader, so the
        roster's rules and stamps apply; touching another address raises
        :class:`SubscriberError` and writes nothing.

        Under the list's lock the file is read row by row and written to a temporary file
        beside it, which replaces it atomically only if a reader changed. A damaged file
        raises :class:`StateError` naming the line and is left as it is. A hand-edited file
        whose rows are out of order is sorted in memory, as :meth:`edit` does."""
        if match is None:
            keys = {key for key in map(_normal_or_none, wanted) if key is not None}
        else:
            keys = set(wanted)
        key_of = match or _same
        with locked(self.path):
            report = self._stream_update(keys, change, key_of)
            if report is None:  # rows out of order: sort them in memory, as edit() does
                with self._loaded() as roster:
                    report = _update_in_memory(roster, keys, change, key_of, self.clock)
                    report.written = roster.changed
        return report

    def _stream_update(
        self, keys: Collection[str], change: RowChange, key_of: Callable[[str], str]
    ) -> BulkReport | None:
        """The streaming pass of :meth:`update_many` (lock held); ``None`` when a row is out of
        order or repeated (nothing written: the caller falls back to the in-memory path)."""
        report = BulkReport()
        with atomic_writer(self.path) as replacement:
            write = replacement.text.write
            write(file_head())
            previous = ""
            for _line_no, line, fields, _status in scan(self.path, ordered=False):
                email = fields[0]
                if email <= previous:
                    replacement.discard()
                    return None
                previous = email
                if key_of(email) in keys:
                    report.matched += 1
                    lines = _change_row(line, email, change, self.clock)
                    if lines is not None:
                        report.changed += 1
                        for new in lines:
                            write(new + "\n")
                        continue
                write(line + "\n")
            if report.changed:
                report.written = True
            else:
                replacement.discard()
        return report

    @contextmanager
    def _loaded(self) -> Iterator[Roster]:
        """The body of :meth:`edit`, for a caller that holds the lock."""
        lines, tidied = self._load()
        roster = Roster(lines, self.clock, tidied=tidied)
        try:
            yield roster
            if roster.changed:
                atomic_write(self.path, render(roster.lines()))
        finally:
            roster.close()

    def tidy(self) -> bool:
        """Sort a hand-edited file; ``True`` if it was out of order."""
        with self.edit() as roster:
            return roster.changed

    def _load(self) -> tuple[list[str], bool]:
        lines: list[str] = []
        previous, in_order = "", True
        for _line_no, line, fields, _status in scan(self.path, ordered=False):
            if in_order and fields[0] <= previous:
                in_order = False
            previous = fields[0]
            lines.append(line)
        if in_order:
            return lines, False
        seen: dict[str, int] = {}
        for line_no, _line, fields, _status in scan(self.path, ordered=False):
            if fields[0] in seen:
                raise StateError(
                    f"{self.path}, line {line_no}: {mask_email(fields[0])} is already on "
                    f"line {seen[fields[0]]}"
                )
            seen[fields[0]] = line_no
        lines.sort(key=row_email)
        return lines, True


def _same(email: str) -> str:
    return email


def _normal_or_none(raw: str) -> str | None:
    try:
        return normalize_email(raw)
    except SubscriberError:
        return None


def _change_row(line: str, email: str, change: RowChange, clock: Clock) -> list[str] | None:
    """Run ``change`` on a roster of one row; the row's new lines (``[]``: forgotten), or
    ``None`` when it changed nothing."""
    roster = Roster([line], clock)
    try:
        change(roster, email)
        if not roster.changed:
            return None
        lines = list(roster.lines())
    finally:
        roster.close()
    if any(row_email(new) != email for new in lines):
        raise SubscriberError(
            f"a bulk update offered {mask_email(email)} and changed another address: "
            "it may change only the reader it is given"
        )
    return lines


def _update_in_memory(
    roster: Roster,
    keys: Collection[str],
    change: RowChange,
    key_of: Callable[[str], str],
    clock: Clock,
) -> BulkReport:
    """:meth:`SubscriberList.update_many` on a loaded roster (a file that needed sorting),
    each reader changed exactly as the streaming pass changes them."""
    report = BulkReport()
    found = [line for line in roster.lines() if key_of(row_email(line)) in keys]
    for line in found:
        email = row_email(line)
        report.matched += 1
        lines = _change_row(line, email, change, clock)
        if lines is not None:
            report.changed += 1
            roster._take_row(email, lines)
    return report


class Roster:
    """The list in memory during :meth:`SubscriberList.edit`, keyed by normalized address.

    Rows nobody touches stay as the lines they were read as (about 170 bytes a reader); a
    changed reader is kept as a :class:`Subscriber` until the save."""

    def __init__(self, lines: list[str], clock: Clock, *, tidied: bool = False) -> None:
        self._base = lines  # sorted by address, checked by scan()
        self._changes: dict[str, Subscriber | None] = {}  # None: forgotten
        self._clock = clock
        self._open = True
        self.changed = tidied

    # -- reading -------------------------------------------------------------------------------

    def get(self, email: str) -> Subscriber | None:
        try:
            key = normalize_email(email)
        except SubscriberError:
            return None
        return self._current(key)

    def __iter__(self) -> Iterator[Subscriber]:
        for item in self._merged():
            yield parse_line(item) if isinstance(item, str) else item

    def __len__(self) -> int:
        size = len(self._base)
        for key, value in self._changes.items():
            in_base = self._find(key) is not None
            if value is None and in_base:
                size -= 1
            elif value is not None and not in_base:
                size += 1
        return size

    def __contains__(self, email: object) -> bool:
        return isinstance(email, str) and self.get(email) is not None

    def lines(self) -> Iterator[str]:
        """Every row line in address order, as the file will hold them."""
        for item in self._merged():
            yield item if isinstance(item, str) else format_row(item)

    # -- changes -------------------------------------------------------------------------------

    def add(
        self,
        email: str,
        *,
        name: str = "",
        status: Status = Status.ACTIVE,
        via: Source,
        ref: str = "",
    ) -> Subscriber:
        """Put a new reader on the list with ``status``. A reader already there is returned
        as they are (a missing name filled in): an operator cannot re-activate someone who left."""
        key, old = self._lookup(email)
        name = clean_text(name, MAX_NAME)
        now = self._now()
        if old is not None:
            if name and not old.name:
                return self._put(old, name=name, ref=clean_text(ref, MAX_REF), updated_at=now)
            return old
        joined = status in (Status.PENDING, Status.ACTIVE)
        new = Subscriber(
            email=key,
            name=name,
            status=status,
            subscribed_at=now if joined else None,
            subscribed_via=via if joined else None,
            confirmed_at=now if status is Status.ACTIVE else None,
            confirmed_via=via if status is Status.ACTIVE else None,
            left_at=None if joined else now,
            left_via=None if joined else via,
            ref=clean_text(ref, MAX_REF),
            updated_at=now,
        )
        return self._store(key, new)

    def request(self, email: str, *, name: str = "", via: Source, ref: str = "") -> Subscriber:
        """A reader asks to join: they become ``pending`` (an active reader stays active)."""
        key, old = self._lookup(email)
        name = clean_text(name, MAX_NAME)
        now = self._now()
        ref = clean_text(ref, MAX_REF)
        if old is None:
            return self._store(
                key,
                Subscriber(
                    email=key,
                    name=name,
                    status=Status.PENDING,
                    subscribed_at=now,
                    subscribed_via=via,
                    ref=ref,
                    updated_at=now,
                ),
            )
        if old.status is Status.ACTIVE:
            return old
        if old.status is Status.PENDING:
            return self._put(old, name=name or old.name, ref=ref, updated_at=now)
        return self._put(  # rejoining after leaving: a new consent record
            old,
            name=name or old.name,
            status=Status.PENDING,
            subscribed_at=now,
            subscribed_via=via,
            confirmed_at=None,
            confirmed_via=None,
            left_at=None,
            left_via=None,
            ref=ref,
            updated_at=now,
        )

    def confirm(self, email: str, *, via: Source, ref: str = "") -> Subscriber:
        """``pending`` -> ``active``. An active reader is returned unchanged; an unknown reader
        or one who left raises :class:`SubscriberError`."""
        _key, old = self._lookup(email)
        if old is None:
            raise SubscriberError(f"{mask_email(email)} is not on the list: nothing to confirm")
        if old.status is Status.ACTIVE:
            return old
        if old.status is not Status.PENDING:
            raise SubscriberError(
                f"{mask_email(old.email)} is {old.status.value}: only a pending reader can be "
                "confirmed (they can subscribe again)"
            )
        now = self._now()
        return self._put(
            old,
            status=Status.ACTIVE,
            confirmed_at=now,
            confirmed_via=via,
            ref=clean_text(ref, MAX_REF),
            updated_at=now,
        )

    def unsubscribe(self, email: str, *, via: Source, ref: str = "") -> Subscriber | None:
        """Any status -> ``unsubscribed``, at once. ``None`` for an unknown address."""
        old = self.get(email)
        if old is None:
            return None
        self._check_open()
        if old.status is Status.UNSUBSCRIBED:
            return old
        now = self._now()
        return self._put(
            old,
            status=Status.UNSUBSCRIBED,
            left_at=now,
            left_via=via,
            ref=clean_text(ref, MAX_REF),
            updated_at=now,
        )

    def mark(self, email: str, status: Status, *, via: Source, ref: str = "") -> Subscriber | None:
        """Record a hard bounce or a spam complaint. ``None`` for an unknown address."""
        if status not in (Status.BOUNCED, Status.COMPLAINED):
            raise SubscriberError(f"mark() takes bounced or complained, not {status.value}")
        old = self.get(email)
        if old is None:
            return None
        self._check_open()
        upgrade = old.status is Status.BOUNCED and status is Status.COMPLAINED
        if old.status in LEFT and not upgrade:
            return old
        now = self._now()
        return self._put(
            old,
            status=status,
            left_at=now,
            left_via=via,
            ref=clean_text(ref, MAX_REF),
            updated_at=now,
        )

    def forget(self, email: str) -> bool:
        """Erase the reader's row, consent record and all. ``True`` if they were on the list.

        The list is one place an address lives; :func:`other_traces` names the others (the
        sender's delivery ledgers keep hashed addresses only, so they need nothing)."""
        self._check_open()
        try:
            key = normalize_email(email)
        except SubscriberError:
            return False
        if self._current(key) is None:
            return False
        if self._find(key) is not None:
            self._changes[key] = None
        else:
            del self._changes[key]
        self.changed = True
        return True

    # -- internals -----------------------------------------------------------------------------

    def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise SubscriberError(
                "the roster is closed: change the list inside `with readers.edit() as roster:`"
            )

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC).replace(microsecond=0)

    def _lookup(self, email: str) -> tuple[str, Subscriber | None]:
        self._check_open()
        key = normalize_email(email)
        return key, self._current(key)

    def _find(self, key: str) -> int | None:
        index = bisect_left(self._base, key, key=row_email)
        if index < len(self._base) and row_email(self._base[index]) == key:
            return index
        return None

    def _current(self, key: str) -> Subscriber | None:
        if key in self._changes:
            return self._changes[key]
        index = self._find(key)
        return parse_line(self._base[index]) if index is not None else None

    def _put(self, old: Subscriber, **update: Any) -> Subscriber:
        new = old.model_copy(update=update)
        if new == old:
            return old
        return self._store(old.email, new)

    def _take_row(self, key: str, lines: list[str]) -> None:
        """Put a reader's new row (``[]``: forgotten) from :func:`_change_row`."""
        if lines:
            self._store(key, parse_line(lines[0]))
        else:
            self.forget(key)

    def _store(self, key: str, new: Subscriber) -> Subscriber:
        self._changes[key] = new
        self.changed = True
        return new

    def _merged(self) -> Iterator[str | Subscriber]:
        changes = self._changes
        untouched: Iterator[tuple[str, str | Subscriber]] = (
            (row_email(line), line) for line in self._base if row_email(line) not in changes
        )
        changed: list[tuple[str, str | Subscriber]] = [
            (key, sub) for key, sub in sorted(changes.items()) if sub is not None
        ]
        for _key, item in heapq.merge(untouched, changed, key=_first):
            yield item


def _first(pair: tuple[str, str | Subscriber]) -> str:
    return pair[0]


# --- import -----------------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did. Every count is of distinct addresses."""

    added: int = 0
    names_filled: int = 0
    unchanged: dict[str, int] = field(default_factory=dict)  # status -> readers already there

    @property
    def kept_away(self) -> int:
        """Readers who had left and were not re-activated."""
        return sum(self.unchanged.get(status.value, 0) for status in LEFT)


def import_readers(
    roster: Roster, rows: Mapping[str, str], *, status: Status, ref: str
) -> ImportReport:
    """Add each (normalized address -> name) not yet on the list with ``status``. Readers
    already there keep their status, so an unsubscribed reader is not brought back."""
    if status not in (Status.PENDING, Status.ACTIVE):
        raise SubscriberError(f"an import makes readers pending or active, not {status.value}")
    report = ImportReport()
    for email, name in rows.items():
        old = roster.get(email)
        if old is None:
            roster.add(email, name=name, status=status, via=Source.IMPORT, ref=ref)
            report.added += 1
            continue
        if name and not old.name:
            roster.add(email, name=name, via=Source.IMPORT, ref=ref)
            report.names_filled += 1
        report.unchanged[old.status.value] = report.unchanged.get(old.status.value, 0) + 1
    return report


# --- forgetting -------------------------------------------------------------------------------


def other_traces(state_dir: Path, outbox_dir: Path) -> list[str]:
    """Where else an address may live after :meth:`Roster.forget`, for a privacy request."""
    return [
        f"delivery ledgers ({state_dir / 'ledger'}) keep hashed addresses only: nothing to erase",
        f"dry-run output ({outbox_dir}) may hold the address: delete it (each dry run rebuilds it)",
        "SendGrid keeps suppression lists and activity: remove the address there (or its API)",
        "the inbox (IMAP folder, Inbound Parse) may keep the reader's own messages: delete them",
        "git history keeps earlier versions of subscribers.csv: rewrite it if the request asks",
    ]
