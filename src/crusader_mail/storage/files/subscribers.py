"""The files store's roster: the list file ``subscribers_dir/subscribers.csv``, and the consent
history beside it (``consent-log.csv``, :mod:`crusader_mail.storage.files.consent_log`).

Reading streams the file (:meth:`SubscriberList.iter`, ``counts``, ``get``) and needs no lock:
a save replaces the file in one rename. :meth:`SubscriberList.edit` locks the list, holds it in
memory as :class:`~crusader_mail.storage.files.changes.ListChanges` (fine for a few interactive
changes) and saves it atomically. :meth:`SubscriberList.update_many` is for bulk changes on a
big list (the suppression sync): it streams the file row by row into a temporary file and
renames it, so its memory grows with the number of changes, not readers; each matching reader
is changed through a ``ListChanges`` holding just that row, so the rules and consent stamps are
the ones ``edit`` applies (:mod:`crusader_mail.storage.rules`). A call that changes nothing
writes nothing. The file format lives in :mod:`crusader_mail.storage.files.list_format`.
Every writer appends the events of its changes to the consent log once the list is saved, and
erases a forgotten reader's events and queued mail, all under the list's lock.

Readers are one per mailbox (:func:`~crusader_mail.storage.rules.mailbox_key`). A list of
format version 1 is read as it is; the first ``edit``, ``update_many``, ``add_many``,
``restore`` or ``tidy`` rewrites it as version 2, merging rows whose addresses differ only in
case (:func:`~crusader_mail.storage.rules.merge_variants`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path

from crusader_mail.clock import Clock
from crusader_mail.errors import StateError, SubscriberError
from crusader_mail.models import ConsentEvent, Source, Status, Subscriber
from crusader_mail.storage.contract import AddReport, BulkReport, HintOf, RosterChanges, RowChange
from crusader_mail.storage.files.changes import ListChanges
from crusader_mail.storage.files.consent_log import ConsentLog
from crusader_mail.storage.files.list_format import (
    HEADER,
    MARKER_PREFIX,
    file_head,
    order_problem,
    render,
    row_email,
    row_key,
    scan,
)
from crusader_mail.storage.files.mail import FileMailQueue
from crusader_mail.storage.rows import (
    COLUMNS,
    RowProblem,
    build,
    format_row,
    parse_line,
    split_line,
)
from crusader_mail.storage.rules import expired, mailbox_key, merge_variants, normal_or_none
from crusader_mail.util.masking import mask_email
from crusader_mail.util.statefile import atomic_write, atomic_writer, locked

LIST_FILE = "subscribers.csv"


class SubscriberList:
    """The list file ``folder/subscribers.csv``. Reading streams it; changes go through
    :meth:`edit`. Readers need no lock: a save replaces the file in one rename. Each change
    first removes the temporary copies of the list that killed writers left (``erased`` keeps
    their paths)."""

    def __init__(self, folder: Path, clock: Clock, mail: FileMailQueue | None = None) -> None:
        self.folder = folder
        self.path = folder / LIST_FILE
        self.clock = clock
        self.mail = mail or FileMailQueue(folder, clock.now)
        self.log = ConsentLog(folder)
        self._indexes: dict[HintOf, _HintIndex] = {}
        self.erased: list[Path] = []  # temporary copies of the list killed writers left

    def iter(self, status: Status | None = None) -> Iterator[Subscriber]:
        """Every reader (or those with ``status``) in address order, one row at a time.

        Memory stays flat whatever the size of the list. A damaged row raises
        :class:`StateError` naming the line when the stream reaches it."""
        for _line_no, _line, fields, row_status in scan(self.path):
            if status is None or row_status == status:
                yield build(fields, row_status)

    def recipients(self) -> Iterator[tuple[str, str]]:
        """(address, name) of every active reader in the order of :meth:`iter`, streamed
        without building readers: a row is split and its status read, not checked field by
        field as :meth:`counts` checks it (a send counts the list first); a row that does not
        split into the columns raises :class:`StateError` naming the line."""
        try:
            handle = self.path.open(encoding="utf-8-sig", newline="")
        except FileNotFoundError:
            return
        active = Status.ACTIVE.value
        marked = f",{active},"
        with handle:
            line_no = 2
            try:
                if not handle.readline().startswith(MARKER_PREFIX) or (
                    handle.readline().rstrip("\r\n") != HEADER
                ):
                    raise StateError(f"{self.path}, line 1: not a crusader-mail subscriber list")
                for line_no, raw in enumerate(handle, start=3):
                    if marked not in raw:
                        continue  # no active reader's row
                    try:
                        fields = split_line(raw.rstrip("\r\n"))
                        if len(fields) != len(COLUMNS):
                            raise RowProblem(f"{len(fields)} columns, expected {len(COLUMNS)}")
                    except RowProblem as problem:
                        raise StateError(f"{self.path}, line {line_no}: {problem}") from None
                    if fields[2] == active:
                        yield fields[0], fields[1]
            except UnicodeDecodeError:
                raise StateError(f"{self.path}, line {line_no + 1}: not UTF-8 text") from None

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
        """The reader with this address (any spelling of it), or ``None``. In a version 1 list
        the rows of one mailbox are merged as the first change will merge them."""
        normal = normal_or_none(email)
        if normal is None:
            return None
        key = mailbox_key(normal)
        found: list[Subscriber] = []
        rows = scan(self.path)
        for _line_no, _line, fields, status in rows:
            row = mailbox_key(fields[0])
            if row == key:
                found.append(build(fields, status))
            elif row > key and rows.version == 2:
                break
        if len(found) > 1:
            return merge_variants(found)
        return found[0] if found else None

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The addresses on the list whose ``hint_of(address)`` is ``hint`` (an empty hint is
        never looked up), from an index of the file built again only when the file changed;
        one index per ``hint_of`` (tokens of two forms), at most two kept."""
        identity = _identity(self.path)
        index = self._indexes.get(hint_of)
        if index is None or index.identity != identity:
            emails = (fields[0] for _no, _line, fields, _status in scan(self.path, ordered=False))
            index = _HintIndex(identity, hint_of, emails)
            if len(self._indexes) >= 2 and hint_of not in self._indexes:
                self._indexes.clear()
            self._indexes[hint_of] = index
        return list(index.by_hint.get(hint, ())) if hint else []

    @contextmanager
    def edit(self) -> Iterator[ListChanges]:
        """Lock the list, load it, yield its :class:`ListChanges`, and save it atomically when
        the block ends without an exception and something changed. A damaged file raises
        :class:`StateError` before the block runs and is left as it is."""
        with locked(self.path, removed=self.erased):
            self.log.check()
            with self._loaded() as roster:
                yield roster
            # after the list is saved: its history, the replies, a forgotten reader's traces
            self._stored(_Done(roster.events, roster.forgotten))
            self.mail.put(roster.queued)

    def _stored(self, done: _Done) -> None:
        """What follows a saved change (the list's lock held): a forgotten reader's history and
        queued mail erased, then the change's events appended to the consent log (under its
        own lock too, which removes what a killed erase left)."""
        with locked(self.log.path, removed=self.erased):
            self.log.erase(done.forgotten)
            self.log.append(done.events)
        self.mail.forget(done.forgotten)

    def history(self, email: str | None = None) -> Iterator[ConsentEvent]:
        """The consent log: the reader's events oldest first, or every event as stored."""
        if email is None:
            return self.log.events()
        normal = normal_or_none(email)
        return iter(self.log.of(normal) if normal is not None else [])

    def restore_history(self, events: Iterable[ConsentEvent]) -> int:
        """Append ``events`` to the consent log as given (a thousand at a time)."""
        count = 0
        stream = iter(events)
        with locked(self.path), locked(self.log.path, removed=self.erased):
            while chunk := list(islice(stream, 1000)):
                count += self.log.append(chunk)
        return count

    def expire_pending(self, before: datetime) -> int:
        """Erase the readers :func:`~crusader_mail.storage.rules.expired` at ``before``,
        found by streaming the list and erased by :meth:`update_many` (which checks them again
        under the lock)."""
        found = [reader.email for reader in self.iter(Status.PENDING) if expired(reader, before)]
        if not found:
            return 0

        def erase(changes: RosterChanges, email: str) -> None:
            reader = changes.get(email)
            if reader is not None and expired(reader, before):
                changes.forget(email)

        return self.update_many(found, erase).changed

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
        """Store each reader's record as given, replacing the reader of that mailbox; a reader
        given twice (in any case) raises :class:`SubscriberError` and stores nothing."""
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

        Without ``match``, ``wanted`` holds addresses in any spelling (their mailbox keys are
        matched; one that is not an address matches nobody). With ``match``, a reader is
        offered when ``match(stored address)`` is in ``wanted`` as given
        (:func:`~crusader_mail.storage.rules.mailbox_key` on addresses SendGrid lowercased).
        ``change(changes, email)`` gets :class:`ListChanges` holding just that reader, so the
        roster's rules and stamps apply; touching another address raises
        :class:`SubscriberError` and writes nothing.

        Under the list's lock the file is read row by row and written to a temporary file
        beside it, which replaces it atomically only if a reader changed. A damaged file
        raises :class:`StateError` naming the line and is left as it is. A hand-edited file
        whose rows are out of order, or a version 1 list, is put in order in memory, as
        :meth:`edit` does."""
        if match is None:
            keys = {mailbox_key(normal) for normal in map(normal_or_none, wanted) if normal}
        else:
            keys = set(wanted)
        key_of = match or mailbox_key
        with locked(self.path, removed=self.erased):
            self.log.check()
            done: dict[str, _RowDone | None] = {}
            report = self._stream_update(keys, change, key_of, done)
            applied = [row for row in done.values() if row is not None]
            if report is None:  # rows out of order: sort them in memory, as edit() does
                with self._loaded() as roster:
                    report, applied = _update_in_memory(
                        roster, keys, change, key_of, self.clock, done
                    )
                    report.written = roster.changed
            if report.written:
                self._stored(_Done.of(applied))
        return report

    def _stream_update(
        self,
        keys: Collection[str],
        change: RowChange,
        key_of: Callable[[str], str],
        done: dict[str, _RowDone | None],
    ) -> BulkReport | None:
        """The streaming pass of :meth:`update_many` (lock held); ``None`` when a row is out of
        order or repeated, or the list is of version 1 (nothing written: the caller falls back
        to the in-memory path, reusing in ``done`` what ``change`` made of the rows it met, so
        it is never called twice for one reader)."""
        report = BulkReport()
        with atomic_writer(self.path) as replacement:
            write = replacement.text.write
            write(file_head())
            previous = ""
            rows = scan(self.path, ordered=False)
            for _line_no, line, fields, _status in rows:
                email = fields[0]
                key = mailbox_key(email)
                if key <= previous or rows.version != 2:
                    replacement.discard()
                    return None
                previous = key
                if key_of(email) in keys:
                    report.matched += 1
                    row = done[line] = _change_row(line, email, change, self.clock)
                    if row is not None:
                        report.changed += 1
                        for new in row.lines:
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
        """The row lines in mailbox-key order, and whether they had to be put in order (a
        hand-edited file, or a version 1 list: its case variants are merged then)."""
        lines: list[str] = []
        previous, in_order = "", True
        rows = scan(self.path, ordered=False)
        for _line_no, line, fields, _status in rows:
            key = mailbox_key(fields[0])
            if in_order and key <= previous:
                in_order = False
            previous = key
            lines.append(line)
        if rows.version is None or (rows.version == 2 and in_order):  # no file, or in order
            return lines, False
        if rows.version == 2:
            self._check_unique()
            lines.sort(key=row_key)
            return lines, True
        return _merge_case_variants(lines, self.path), True

    def _check_unique(self) -> None:
        """A hand-edited version 2 list holds each mailbox once: else the error names the row."""
        seen: dict[str, tuple[int, str]] = {}
        for line_no, _line, fields, _status in scan(self.path, ordered=False):
            key = mailbox_key(fields[0])
            if key in seen:
                first_no, first = seen[key]
                raise StateError(order_problem(self.path, line_no, fields[0], first, first_no))
            seen[key] = (line_no, fields[0])


def _merge_case_variants(lines: list[str], path: Path) -> list[str]:
    """The rows of a version 1 list in mailbox-key order, those of one mailbox merged into one
    reader (:func:`~crusader_mail.storage.rules.merge_variants`). An address twice in the very
    same spelling is damage, as it always was."""
    lines.sort(key=row_key)
    merged: list[str] = []
    start = 0
    while start < len(lines):
        key = row_key(lines[start])
        end = start + 1
        while end < len(lines) and row_key(lines[end]) == key:
            end += 1
        if end - start == 1:
            merged.append(lines[start])
        else:
            readers = [parse_line(line) for line in lines[start:end]]
            spellings = [reader.email for reader in readers]
            if len(set(spellings)) != len(spellings):
                twice = next(email for email in spellings if spellings.count(email) > 1)
                raise StateError(_repeated(path, twice))
            merged.append(format_row(merge_variants(readers)))
        start = end
    return merged


def _repeated(path: Path, email: str) -> str:
    """Where the very same address is on the list twice."""
    where = [no for no, _line, fields, _status in scan(path, ordered=False) if fields[0] == email]
    return f"{path}, line {where[-1]}: {mask_email(email)} is already on line {where[0]}"


@dataclass
class _Done:
    """What a stored change leaves for the consent log and the mail queue."""

    events: list[ConsentEvent] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, rows: Iterable[_RowDone]) -> _Done:
        done = cls()
        for row in rows:
            done.events += row.events
            done.forgotten += row.forgotten
        return done


@dataclass
class _RowDone:
    """What a bulk change made of one reader: their new row lines (``[]``: forgotten), and the
    events and forgetting to record once the list is stored."""

    lines: list[str]
    events: list[ConsentEvent]
    forgotten: list[str]


def _change_row(line: str, email: str, change: RowChange, clock: Clock) -> _RowDone | None:
    """Run ``change`` on a roster of one row; what it made of the row, or ``None`` when it
    changed nothing."""
    roster = ListChanges([line], clock)
    try:
        change(roster, email)
        if not roster.changed:
            return None
        row = _RowDone(list(roster.lines()), roster.events, roster.forgotten)
    finally:
        roster.close()
    if any(row_email(new) != email for new in row.lines):
        raise SubscriberError(
            f"a bulk update offered {mask_email(email)} and changed another address: "
            "it may change only the reader it is given"
        )
    return row


def _update_in_memory(
    roster: ListChanges,
    keys: Collection[str],
    change: RowChange,
    key_of: Callable[[str], str],
    clock: Clock,
    done: dict[str, _RowDone | None],
) -> tuple[BulkReport, list[_RowDone]]:
    """:meth:`SubscriberList.update_many` on a loaded roster (a file that needed sorting),
    each reader changed exactly as the streaming pass changes them (a row it changed already,
    in ``done``, is not changed again); the report and what was made of the changed rows."""
    report = BulkReport()
    applied: list[_RowDone] = []
    found = [line for line in roster.lines() if key_of(row_email(line)) in keys]
    for line in found:
        email = row_email(line)
        report.matched += 1
        if line not in done:
            done[line] = _change_row(line, email, change, clock)
        row = done[line]
        if row is not None:
            report.changed += 1
            roster.take_row(mailbox_key(email), row.lines)
            applied.append(row)
    return report, applied


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
