"""The files store's roster: the list file ``subscribers_dir/subscribers.csv``.

Reading streams the file (:meth:`SubscriberList.iter`, ``counts``, ``get``) and needs no lock:
a save replaces the file in one rename. :meth:`SubscriberList.edit` locks the list, holds it in
memory as :class:`~crusader_mail.storage.files.changes.ListChanges` (fine for a few interactive
changes) and saves it atomically. :meth:`SubscriberList.update_many` is for bulk changes on a
big list (the suppression sync): it streams the file row by row into a temporary file and
renames it, so its memory grows with the number of changes, not readers; each matching reader
is changed through a ``ListChanges`` holding just that row, so the rules and consent stamps are
the ones ``edit`` applies (:mod:`crusader_mail.storage.rules`). A call that changes nothing
writes nothing. The file format lives in :mod:`crusader_mail.storage.files.list_format`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from crusader_mail.clock import Clock
from crusader_mail.errors import StateError, SubscriberError
from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.storage.contract import AddReport, BulkReport, HintOf, RowChange
from crusader_mail.storage.files.changes import ListChanges
from crusader_mail.storage.files.list_format import file_head, render, row_email, scan
from crusader_mail.storage.files.mail import FileMailQueue
from crusader_mail.storage.rows import build
from crusader_mail.storage.rules import normal_or_none
from crusader_mail.util.masking import mask_email
from crusader_mail.util.statefile import atomic_write, atomic_writer, locked

LIST_FILE = "subscribers.csv"


class SubscriberList:
    """The list file ``folder/subscribers.csv``. Reading streams it; changes go through
    :meth:`edit`. Readers need no lock: a save replaces the file in one rename."""

    def __init__(self, folder: Path, clock: Clock, mail: FileMailQueue | None = None) -> None:
        self.folder = folder
        self.path = folder / LIST_FILE
        self.clock = clock
        self.mail = mail or FileMailQueue(folder, clock.now)
        self._index: _HintIndex | None = None

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
        key = normal_or_none(email)
        if key is None:
            return None
        for _line_no, _line, fields, status in scan(self.path):
            if fields[0] == key:
                return build(fields, status)
            if fields[0] > key:
                break
        return None

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The addresses on the list whose ``hint_of(address)`` is ``hint``, from an index of
        the file that is built again only when the file changed."""
        identity = _identity(self.path)
        index = self._index
        if index is None or index.identity != identity or index.hint_of != hint_of:
            emails = (fields[0] for _no, _line, fields, _status in scan(self.path, ordered=False))
            index = self._index = _HintIndex(identity, hint_of, emails)
        return list(index.by_hint.get(hint, ()))

    @contextmanager
    def edit(self) -> Iterator[ListChanges]:
        """Lock the list, load it, yield its :class:`ListChanges`, and save it atomically when
        the block ends without an exception and something changed. A damaged file raises
        :class:`StateError` before the block runs and is left as it is."""
        with locked(self.path):
            with self._loaded() as roster:
                yield roster
            # after the list is saved: queue the replies, drop a forgotten reader's mail
            self.mail.forget(roster.forgotten)
            self.mail.put(roster.queued)

    def add_many(
        self, readers: Iterable[tuple[str, str]], *, status: Status, via: Source, ref: str
    ) -> AddReport:
        """Add each (normalized address, name) by the rules in one locked change."""
        report = AddReport()
        with self.edit() as changes:
            for email, name in readers:
                old = changes.get(email)
                new = changes.add(email, name=name, status=status, via=via, ref=ref)
                if old is None:
                    report.added += 1
                    continue
                if new.name != old.name:
                    report.names_filled += 1
                report.unchanged[old.status.value] = report.unchanged.get(old.status.value, 0) + 1
        return report

    def restore(self, readers: Iterable[Subscriber]) -> int:
        """Store each reader's record as given, replacing one already there."""
        count = 0
        with self.edit() as changes:
            for reader in readers:
                changes.put(reader)
                count += 1
        return count

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
        ``change(changes, email)`` gets :class:`ListChanges` holding just that reader, so the
        roster's rules and stamps apply; touching another address raises
        :class:`SubscriberError` and writes nothing.

        Under the list's lock the file is read row by row and written to a temporary file
        beside it, which replaces it atomically only if a reader changed. A damaged file
        raises :class:`StateError` naming the line and is left as it is. A hand-edited file
        whose rows are out of order is sorted in memory, as :meth:`edit` does."""
        if match is None:
            keys = {key for key in map(normal_or_none, wanted) if key is not None}
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
    def _loaded(self) -> Iterator[ListChanges]:
        """The body of :meth:`edit`, for a caller that holds the lock."""
        lines, tidied = self._load()
        base_candidates = None if tidied else self.candidates  # the file as it is: its index
        roster = ListChanges(lines, self.clock, tidied=tidied, base_candidates=base_candidates)
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


def _change_row(line: str, email: str, change: RowChange, clock: Clock) -> list[str] | None:
    """Run ``change`` on a roster of one row; the row's new lines (``[]``: forgotten), or
    ``None`` when it changed nothing."""
    roster = ListChanges([line], clock)
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
    roster: ListChanges,
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
            roster.take_row(email, lines)
    return report


class _HintIndex:
    """The list's addresses by token hint, for the file with ``identity``."""

    def __init__(self, identity: tuple[int, ...], hint_of: HintOf, emails: Iterator[str]) -> None:
        self.identity = identity
        self.hint_of = hint_of
        self.by_hint: dict[bytes, list[str]] = {}
        for email in emails:
            self.by_hint.setdefault(hint_of(email), []).append(email)


def _identity(path: Path) -> tuple[int, ...]:
    """Which file is at ``path`` now: a save replaces it, so its inode and time change."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return ()
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
