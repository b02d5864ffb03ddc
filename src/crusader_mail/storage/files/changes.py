"""The files store's roster during one unit of change: the list's rows in memory, changed by
:mod:`crusader_mail.storage.rules`.

Readers are told apart by mailbox key (:func:`~crusader_mail.storage.rules.mailbox_key`): any
spelling of an address finds its reader, whose address stays as first given. The rows as
stored are behind :class:`Rows`: a list of lines in memory (:class:`LoadedRows`, for a list
that must be put in order first, and for the merge driver), or the checked file itself, read
by binary search (``FileRows`` in :mod:`.list_rows`): a change touches only the rows it
reads. A changed reader is kept as its new row line until the save (about 170 bytes, whatever
the number of changes), a forgotten one as ``None``. Each change that changed a reader is kept
as a :class:`ConsentEvent` in ``events`` for the consent log, written after the list
(:meth:`SubscriberList.edit`).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

from crusader_mail.clock import Clock
from crusader_mail.errors import InvalidAddress, SubscriberError
from crusader_mail.models import (
    ConsentAction,
    ConsentEvent,
    OutgoingMessage,
    Preferences,
    Source,
    Status,
    Subscriber,
)
from crusader_mail.storage import rules
from crusader_mail.storage.contract import HintOf
from crusader_mail.storage.files.list_format import row_email, row_key
from crusader_mail.storage.rows import AddressCheck, format_row, parse_line
from crusader_mail.util.masking import mask_email


class Rows(Protocol):
    """The rows of the list as stored, sorted by mailbox key, one per key, checked."""

    def line(self, key: str) -> str | None:
        """The row of mailbox key ``key``, ``None`` when there is none."""
        ...

    def lines(self) -> Iterator[str]:
        """Every row, in order."""
        ...

    def __len__(self) -> int: ...

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The addresses of the rows whose ``hint_of`` is ``hint``."""
        ...


class LoadedRows:
    """Rows held in memory as lines sorted by mailbox key."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines

    def line(self, key: str) -> str | None:
        index = bisect_left(self._lines, key, key=row_key)
        if index < len(self._lines) and row_key(self._lines[index]) == key:
            return self._lines[index]
        return None

    def lines(self) -> Iterator[str]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        return [email for email in map(row_email, self._lines) if hint_of(email) == hint]


class OneRow:
    """One stored row (or none), for a change of one reader (:class:`Rows`)."""

    def __init__(self, line: str | None) -> None:
        self._line = line
        self._key = row_key(line) if line is not None else None

    def line(self, key: str) -> str | None:
        return self._line if key == self._key else None

    def lines(self) -> Iterator[str]:
        return iter([self._line] if self._line is not None else [])

    def __len__(self) -> int:
        return 0 if self._line is None else 1

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        line = self._line
        return [row_email(line)] if line is not None and hint_of(row_email(line)) == hint else []


class ListChanges:
    """The list during :meth:`SubscriberList.edit`, keyed by mailbox key: ``rows`` as stored
    (or their lines, sorted by mailbox key, one per key, and checked) and the changes made."""

    def __init__(
        self,
        rows: Rows | list[str],
        clock: Clock,
        *,
        tidied: bool = False,
        check: AddressCheck | None = None,
        preferences: Callable[[], dict[str, Preferences]] | None = None,
    ) -> None:
        self._rows: Rows = LoadedRows(rows) if isinstance(rows, list) else rows
        self._check = check or AddressCheck()  # addresses in normal form pass at once
        self._last_normal: tuple[str, str] | None = None
        self._last_parsed: tuple[str, Subscriber | None] = ("", None)
        self._changes: dict[str, str | None] = {}  # by key: the new row; None: forgotten
        self._clock = clock
        self._open = True
        self.changed = tidied
        self.queued: list[OutgoingMessage] = []  # sent after the save (SubscriberList.edit)
        self.forgotten: list[str] = []  # their history and queued mail go after the save
        self.events: list[ConsentEvent] = []  # appended to the consent log after the save
        self._load_preferences = preferences  # None: a bulk change's unit (no preferences)
        self._preferences: dict[str, Preferences] | None = None  # read at the first use
        self.preferences_changed = False  # saved after the list (SubscriberList.edit)

    # -- reading -------------------------------------------------------------------------------

    def get(self, email: str) -> Subscriber | None:
        key = self._key_or_none(email)
        return self._current(key) if key is not None else None

    def __iter__(self) -> Iterator[Subscriber]:
        for line in self.lines():
            yield parse_line(line)

    def __len__(self) -> int:
        size = len(self._rows)
        for key, value in self._changes.items():
            stored = self._rows.line(key) is not None
            if value is None and stored:
                size -= 1
            elif value is not None and not stored:
                size += 1
        return size

    def __contains__(self, email: object) -> bool:
        return isinstance(email, str) and self.get(email) is not None

    def lines(self) -> Iterator[str]:
        """Every row line in address order, as the file will hold them."""
        changes = self._changes
        untouched = (
            (key, line) for line in self._rows.lines() if (key := row_key(line)) not in changes
        )
        changed = [(key, line) for key, line in sorted(changes.items()) if line is not None]
        for _key, line in heapq.merge(untouched, changed, key=_first):
            yield line

    def changes(self) -> list[tuple[str, str | None]]:
        """The changed rows by mailbox key, in order: the new row line, ``None`` if forgotten."""
        return sorted(self._changes.items())

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The addresses on the list now (changes included) whose hint is ``hint``."""
        changes = self._changes
        base = self._rows.candidates(hint, hint_of)
        found = [email for email in base if rules.mailbox_key(email) not in changes]
        for line in changes.values():  # changed readers, as they are now
            if line is not None and hint_of(email := row_email(line)) == hint:
                found.append(email)
        return found

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
        normal, key, old = self._lookup(email)
        now = self._clock.now()
        new = rules.add(old, normal, name=name, status=status, via=via, ref=ref, now=now)
        self._keep(key, old, new, ConsentAction.ADD, via, ref, now)
        return new

    def request(self, email: str, *, name: str = "", via: Source, ref: str = "") -> Subscriber:
        normal, key, old = self._lookup(email)
        now = self._clock.now()
        new = rules.request(old, normal, name=name, via=via, ref=ref, now=now)
        self._keep(key, old, new, ConsentAction.REQUEST, via, ref, now)
        return new

    def confirm(self, email: str, *, via: Source, ref: str = "") -> Subscriber:
        _normal, key, old = self._lookup(email)
        now = self._clock.now()
        new = rules.confirm(old, email, via=via, ref=ref, now=now)
        self._keep(key, old, new, ConsentAction.CONFIRM, via, ref, now)
        return new

    def unsubscribe(self, email: str, *, via: Source, ref: str = "") -> Subscriber | None:
        old = self.get(email)
        if old is not None:
            self._check_open()
        now = self._clock.now()
        new = rules.unsubscribe(old, via=via, ref=ref, now=now)
        if old is not None and new is not None:
            key = rules.mailbox_key(old.email)
            self._keep(key, old, new, ConsentAction.UNSUBSCRIBE, via, ref, now)
        return new

    def mark(self, email: str, status: Status, *, via: Source, ref: str = "") -> Subscriber | None:
        old = self.get(email)
        if old is not None:
            self._check_open()
        now = self._clock.now()
        new = rules.mark(old, status, via=via, ref=ref, now=now)
        if old is not None and new is not None:
            action = ConsentAction.BOUNCE if status is Status.BOUNCED else ConsentAction.COMPLAIN
            self._keep(rules.mailbox_key(old.email), old, new, action, via, ref, now)
        return new

    def forget(self, email: str) -> bool:
        """Erase the reader's row, consent record and all. ``True`` if they were on the list."""
        self._check_open()
        key = self._key_or_none(email)
        current = self._current(key) if key is not None else None
        if key is None or current is None:
            return False
        if self._rows.line(key) is not None:
            self._changes[key] = None
        else:
            del self._changes[key]
        self.changed = True
        self.forgotten.append(current.email)
        if self._load_preferences is not None:  # the file follows after the save
            self.all_preferences().pop(key, None)
        self.events = [e for e in self.events if rules.mailbox_key(e.email) != key]
        return True

    def preferences(self, email: str) -> Preferences:
        """The reader's preferences as they are now (the default when they chose none)."""
        key = self._key_or_none(email)
        return self.all_preferences().get(key, Preferences()) if key else Preferences()

    def set_preferences(
        self, email: str, prefs: Preferences, *, via: Source, ref: str = ""
    ) -> Subscriber | None:
        """Store an active reader's choice (:func:`~crusader_mail.storage.rules.choose`) and
        its event; ``None`` for anyone not active. The list's row is not changed."""
        self._check_open()
        reader = self.get(email)
        if reader is None or reader.status is not Status.ACTIVE:
            return None
        key = rules.mailbox_key(reader.email)
        now = self._clock.now()
        chosen = rules.choose(reader, self.preferences(email), prefs, now=now)
        if chosen is not None:
            new, action = chosen
            table = self.all_preferences()
            if new.is_default:
                table.pop(key, None)
            else:
                table[key] = new
            self.preferences_changed = True
            self.events.append(rules.event(action, reader, via=via, ref=ref, now=now))
        return reader

    def all_preferences(self) -> dict[str, Preferences]:
        """Every reader's preferences by mailbox key, as they are now (read once)."""
        if self._preferences is None:
            if self._load_preferences is None:
                raise SubscriberError("preferences are changed one reader at a time (edit())")
            self._preferences = self._load_preferences()
        return self._preferences

    def queue_mail(self, message: OutgoingMessage) -> None:
        """Keep ``message``; the list queues it once the change is saved."""
        self._check_open()
        self.queued.append(message)

    # -- internals -----------------------------------------------------------------------------

    def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise SubscriberError(
                "the roster is closed: change the list inside `with roster.edit() as changes:`"
            )

    def _lookup(self, email: str) -> tuple[str, str, Subscriber | None]:
        """The address in normal form, its key and its reader (raises :class:`InvalidAddress`)."""
        self._check_open()
        normal = self._normal(email)
        key = rules.mailbox_key(normal)
        return normal, key, self._current(key)

    def _key_or_none(self, email: str) -> str | None:
        """The mailbox key of ``email`` in any spelling, ``None`` when it is no address."""
        try:
            return rules.mailbox_key(self._normal(email))
        except InvalidAddress:
            return None

    def _normal(self, email: str) -> str:
        """``email`` in normal form (the last one asked is kept: a get, then a change)."""
        if self._last_normal is None or self._last_normal[0] != email:
            self._last_normal = (email, self._check.normal(email))
        return self._last_normal[1]

    def _current(self, key: str) -> Subscriber | None:
        line = self._changes[key] if key in self._changes else self._rows.line(key)
        if line is None:
            return None
        if self._last_parsed[0] != line:  # the last one read is kept, as above
            self._last_parsed = (line, parse_line(line))
        return self._last_parsed[1]

    def _keep(
        self,
        key: str,
        old: Subscriber | None,
        new: Subscriber,
        action: ConsentAction,
        via: Source,
        ref: str,
        now: datetime,
    ) -> None:
        """Keep ``new`` and its event unless the rule returned ``old`` itself (no change)."""
        if new is not old:
            self._changes[key] = format_row(new)
            self.changed = True
            self.events.append(rules.event(action, new, via=via, ref=ref, now=now))

    def put(self, reader: Subscriber) -> None:
        """Store ``reader`` as given (a restore), replacing the reader of its mailbox: no rule
        runs. A second reader of one mailbox in the same change raises
        :class:`SubscriberError` (a restore holds each reader once)."""
        self._check_open()
        normal = self._normal(reader.email)
        if normal != reader.email:
            raise SubscriberError(f"{mask_email(reader.email)} is not in normal form")
        key = rules.mailbox_key(normal)
        if key in self._changes:
            raise SubscriberError(f"{mask_email(reader.email)} is given twice (in any case)")
        self._changes[key] = format_row(reader)
        self.changed = True
        now = self._clock.now()
        self.events.append(
            rules.event(ConsentAction.RESTORE, reader, via=Source.IMPORT, ref="restore", now=now)
        )

    def take_row(self, key: str, lines: list[str]) -> None:
        """Put a reader's new row (``[]``: forgotten), as a bulk change made it (its events
        are the bulk change's to keep)."""
        self._check_open()
        if lines:
            self._changes[key] = lines[0]
            self.changed = True
        else:
            self.forget(key)


def _first(pair: tuple[str, object]) -> str:
    return pair[0]
