"""The files store's roster during one unit of change: the list's rows in memory, changed by
:mod:`crusader_mail.storage.rules`.

Readers are told apart by mailbox key (:func:`~crusader_mail.storage.rules.mailbox_key`): any
spelling of an address finds its reader, whose address stays as first given. Rows nobody
touches stay as the lines they were read as (about 170 bytes a reader); a changed reader is
kept as a :class:`Subscriber` (a restored one as its row line) until the save, a forgotten one
as ``None``. Each change that changed a reader is kept as a :class:`ConsentEvent` in
``events`` for the consent log, written after the list (:meth:`SubscriberList.edit`).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import datetime

from crusader_mail.clock import Clock
from crusader_mail.errors import SubscriberError
from crusader_mail.models import (
    ConsentAction,
    ConsentEvent,
    OutgoingMessage,
    Source,
    Status,
    Subscriber,
)
from crusader_mail.storage import rules
from crusader_mail.storage.contract import HintOf
from crusader_mail.storage.files.list_format import row_email, row_key
from crusader_mail.storage.rows import format_row, parse_line
from crusader_mail.util.masking import mask_email

BaseCandidates = Callable[[bytes, HintOf], list[str]]
"""Finds the addresses of the rows as loaded whose hint is the one given."""


class ListChanges:
    """The list in memory during :meth:`SubscriberList.edit`, keyed by mailbox key.

    ``lines`` are the rows as loaded, sorted by mailbox key, one per key, and checked;
    ``base_candidates`` (when given) answers :meth:`candidates` for them from an index, else
    the lines are searched."""

    def __init__(
        self,
        lines: list[str],
        clock: Clock,
        *,
        tidied: bool = False,
        base_candidates: BaseCandidates | None = None,
    ) -> None:
        self._base = lines
        self._changes: dict[str, Subscriber | str | None] = {}  # by key; None: forgotten
        self._clock = clock
        self._base_candidates = base_candidates
        self._open = True
        self.changed = tidied
        self.queued: list[OutgoingMessage] = []  # sent after the save (SubscriberList.edit)
        self.forgotten: list[str] = []  # their history and queued mail go after the save
        self.events: list[ConsentEvent] = []  # appended to the consent log after the save

    # -- reading -------------------------------------------------------------------------------

    def get(self, email: str) -> Subscriber | None:
        key = _key_or_none(email)
        return self._current(key) if key is not None else None

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

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The addresses on the list now (changes included) whose hint is ``hint``."""
        if self._base_candidates is not None:
            base = self._base_candidates(hint, hint_of)
        else:
            base = [email for email in map(row_email, self._base) if hint_of(email) == hint]
        changes = self._changes
        found = [email for email in base if rules.mailbox_key(email) not in changes]
        for item in changes.values():  # changed readers, as they are now
            email = row_email(item) if isinstance(item, str) else item.email if item else None
            if email is not None and hint_of(email) == hint:
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
        key = _key_or_none(email)
        current = self._current(key) if key is not None else None
        if key is None or current is None:
            return False
        if self._find(key) is not None:
            self._changes[key] = None
        else:
            del self._changes[key]
        self.changed = True
        self.forgotten.append(current.email)
        self.events = [e for e in self.events if rules.mailbox_key(e.email) != key]
        return True

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
        normal = rules.normalize_email(email)
        key = rules.mailbox_key(normal)
        return normal, key, self._current(key)

    def _find(self, key: str) -> int | None:
        index = bisect_left(self._base, key, key=row_key)
        if index < len(self._base) and row_key(self._base[index]) == key:
            return index
        return None

    def _current(self, key: str) -> Subscriber | None:
        if key in self._changes:
            item = self._changes[key]
            return parse_line(item) if isinstance(item, str) else item
        index = self._find(key)
        return parse_line(self._base[index]) if index is not None else None

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
            self._changes[key] = new
            self.changed = True
            self.events.append(rules.event(action, new, via=via, ref=ref, now=now))

    def put(self, reader: Subscriber) -> None:
        """Store ``reader`` as given (a restore), replacing the reader of its mailbox: no rule
        runs. A second reader of one mailbox in the same change raises
        :class:`SubscriberError` (a restore holds each reader once)."""
        self._check_open()
        normal = rules.normalize_email(reader.email)
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
            self._changes[key] = parse_line(lines[0])
            self.changed = True
        else:
            self.forget(key)

    def _merged(self) -> Iterator[str | Subscriber]:
        changes = self._changes
        untouched: Iterator[tuple[str, str | Subscriber]] = (
            (key, line) for line in self._base if (key := row_key(line)) not in changes
        )
        changed: list[tuple[str, str | Subscriber]] = [
            (key, item) for key, item in sorted(changes.items(), key=_first) if item is not None
        ]
        for _key, item in heapq.merge(untouched, changed, key=_first):
            yield item


def _first(pair: tuple[str, object]) -> str:
    return pair[0]


def _key_or_none(email: str) -> str | None:
    """The mailbox key of ``email`` in any spelling, ``None`` when it is no address."""
    normal = rules.normal_or_none(email)
    return rules.mailbox_key(normal) if normal is not None else None
