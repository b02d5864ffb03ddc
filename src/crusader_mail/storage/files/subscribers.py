"""The files store's roster: the list file ``subscribers_dir/subscribers.csv``, and the consent
history beside it (``consent-log.csv``, :mod:`crusader_mail.storage.files.consent_log`).

A command touches only what it changes. The first command that meets a version of the list
scans it once, checking every row (:func:`~.list_index.survey`: damage raises
:class:`StateError` naming the line, and nothing is written); what the scan found (counts by
status, where the rows of rare statuses are, and, for token look-ups, the rows by hint) is
kept in memory for that version, and every writer keeps it for the version it writes in
``.subscribers-index/`` (:mod:`.list_index`), so the next command finds it there instead of
scanning again. A version of the list nobody here wrote (a git checkout, a merge, a hand
edit) is scanned again.

- Reading needs no lock (a save replaces the file in one rename): :meth:`~SubscriberList.counts`
  is the index's counts; :meth:`~SubscriberList.get` a binary search
  (:meth:`.list_file.Snapshot.locate`); :meth:`~SubscriberList.iter` streams the rows (or, for
  a rare status, reads just its rows); :meth:`~SubscriberList.candidates` reads the hint table.
- :meth:`SubscriberList.edit` locks the list and gives
  :class:`~crusader_mail.storage.files.changes.ListChanges` over the file itself (``FileRows``:
  rows found by binary search, only the changed ones held). The save writes a whole new file
  atomically (temporary file, fsync, rename, under the lock): the old bytes are copied around
  the changed rows (:func:`.list_file.write_spliced`), so a change costs one copy of the file
  (about 0.1 s for a million readers) and memory for the changed rows only.
- :meth:`SubscriberList.update_many` (the suppression sync) looks its few readers up the same
  way, or streams the whole file row by row into the new one when it is offered many; each
  matching reader is changed through a ``ListChanges`` holding just that row, so the rules and
  consent stamps are the ones ``edit`` applies (:mod:`crusader_mail.storage.rules`).
- :meth:`SubscriberList.add_many` (an import) sorts what it is given by mailbox key in runs
  of :data:`RUN` readers (spilled beside the list as temporary files, removed with the lock),
  merges them with the list as it streams it, and writes the new list once: memory does not
  grow with the list nor with the import.

A call that changes nothing writes nothing. The file format lives in :mod:`.list_format`.
Every writer appends the events of its changes to the consent log once the list is saved, and
erases a forgotten reader's events and queued mail, all under the list's lock.

Readers are one per mailbox (:func:`~crusader_mail.storage.rules.mailbox_key`). A list of
format version 1, or a version 2 list whose rows a hand edit put out of order, is read as it
is (each read scans it); the first ``edit``, ``update_many``, ``add_many``, ``restore`` or
``tidy`` loads it into memory and rewrites it in order, merging rows whose addresses differ
only in case (:func:`~crusader_mail.storage.rules.merge_variants`).
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any

from crusader_mail.clock import Clock
from crusader_mail.errors import StateError, SubscriberError
from crusader_mail.models import ConsentEvent, Preferences, Source, Status, Subscriber
from crusader_mail.storage.contract import AddReport, BulkReport, HintOf, RosterChanges, RowChange
from crusader_mail.storage.files.changes import ListChanges, LoadedRows, OneRow, Rows
from crusader_mail.storage.files.consent_log import ConsentLog
from crusader_mail.storage.files.list_file import (
    Identity,
    Snapshot,
    Splice,
    stored_identity,
    write_spliced,
)
from crusader_mail.storage.files.list_format import (
    BOM,
    ListScan,
    check_marker,
    file_head,
    order_problem,
    row_email,
    row_key,
    scan,
)
from crusader_mail.storage.files.list_index import (
    RARE,
    Edit,
    HintTable,
    IndexFolder,
    ListState,
    Survey,
    key_check,
    survey,
    updated,
)
from crusader_mail.storage.files.mail import FileMailQueue
from crusader_mail.storage.files.preferences import PreferenceFile
from crusader_mail.storage.rows import (
    AddressCheck,
    build,
    format_event,
    format_row,
    parse_line,
    split_line,
    status_of,
)
from crusader_mail.storage.rules import (
    check_on_list,
    expired,
    mailbox_key,
    merge_variants,
    normal_or_none,
    to_restore,
)
from crusader_mail.util.masking import mask_email
from crusader_mail.util.spool import Presorted, Record, SortedSpool
from crusader_mail.util.statefile import Replacement, atomic_writer, locked

LIST_FILE = "subscribers.csv"
SPLICE_LIMIT = 20_000
"""At most this many changed rows are looked up one by one and spliced in; more, and the
writer streams the whole file instead (one pass, in order)."""


class SubscriberList:
    """The list file ``folder/subscribers.csv``. Reading streams it or reads only the rows it
    needs; changes go through :meth:`edit`. Readers need no lock: a save replaces the file in
    one rename. Each change first removes the temporary copies of the list that killed
    writers left (``erased`` keeps their paths)."""

    def __init__(self, folder: Path, clock: Clock, mail: FileMailQueue | None = None) -> None:
        self.folder = folder
        self.path = folder / LIST_FILE
        self.clock = clock
        self.mail = mail or FileMailQueue(folder, clock.now)
        self.log = ConsentLog(folder)
        self.prefs = PreferenceFile(folder)
        self.index = IndexFolder(folder, self.path)
        self._state: ListState | None = None  # the last checked version met (any identity)
        self._tables: dict[str, HintTable] = {}  # hint tables of ``_tables_for``
        self._tables_for: Identity | None = None
        self.erased: list[Path] = []  # temporary copies of the list killed writers left

    # -- what is known of a version of the list ------------------------------------------------

    def _known(self, snapshot: Snapshot) -> ListState | None:
        """The checked state of ``snapshot``'s file when known here or in the index (no scan)."""
        state = self._state
        if state is None or state.identity != snapshot.identity:
            state = self.index.load(snapshot.identity)
            if state is None:
                return None
            self._state = state
        snapshot.start = state.start
        return state

    def _checked(self, snapshot: Snapshot) -> ListState | None:
        """The checked state of ``snapshot``'s file, scanning it when it is not known (damage
        raises :class:`StateError`); ``None`` for a list of version 1 or out of order."""
        state = self._known(snapshot)
        if state is not None:
            return state
        found = survey(snapshot)
        if not found.usable:
            return None
        self._state = found.state
        return found.state

    # -- reading -------------------------------------------------------------------------------

    def iter(self, status: Status | None = None) -> Iterator[Subscriber]:
        """Every reader (or those with ``status``) in address order, one row at a time.

        Memory stays flat whatever the size of the list. A damaged row raises
        :class:`StateError` naming the line when the stream reaches it (a version of the list
        not known here is checked row by row as it streams)."""
        for line in self._stream(status):
            yield parse_line(line) if isinstance(line, str) else line

    def recipients(self) -> Iterator[tuple[str, str]]:
        """(address, name) of every active reader in the order of :meth:`iter`, streamed
        without building readers. A list already checked (known here or from the index, as
        :meth:`counts` leaves it before a send) is read in 64 KiB blocks and its rows split, not
        checked again; one not yet checked is read through :meth:`iter`, which checks every
        row."""
        snapshot = Snapshot.open(self.path)
        if snapshot is None:
            return
        with snapshot:
            if self._known(snapshot) is not None:
                active = Status.ACTIVE.value
                marked = f",{active},"
                position, rest = snapshot.start, b""
                while True:
                    chunk = os.pread(snapshot.fd, 1 << 16, position)
                    position += len(chunk)
                    block = rest + chunk
                    cut = block.rfind(b"\n") + 1 if chunk else len(block)  # whole lines
                    rest = block[cut:]
                    for line in block[:cut].decode("utf-8").split("\n"):
                        if marked in line:
                            if '"' in line:
                                fields = split_line(line.rstrip("\r"))
                            else:
                                fields = line.split(",", 3)
                            if fields[2] == active:
                                yield fields[0], fields[1]
                    if not chunk:
                        return
        for reader in self.iter(Status.ACTIVE):
            yield reader.email, reader.name

    def lines(self) -> Iterator[str]:
        """The checked row lines as stored (for ``export``), in order."""
        for line in self._stream(None, lines=True):
            yield line if isinstance(line, str) else format_row(line)

    def _stream(self, status: Status | None, *, lines: bool = False) -> Iterator[str | Subscriber]:
        """The rows of ``status`` (all with ``None``): as stored when the version is known
        (a rare status read from its offsets), else from one checked scan, which makes it
        known when it ends."""
        snapshot = Snapshot.open(self.path)
        if snapshot is None:
            return
        with snapshot:
            state = self._known(snapshot)
            if state is None:
                found = Survey(snapshot, ordered=True)
                for _line_no, line, fields, row_status in found.rows():
                    if status is None or row_status == status:
                        yield line if lines else build(fields, row_status)
                if found.usable:
                    self._state = found.state
                return
            if status is not None and status in state.rows:
                for start in state.rows[status]:
                    yield snapshot.line_at(start)
                return
            wanted = None if status is None else f",{status.value},"
            for line in _lines(snapshot):
                if wanted is None or (wanted in line and status_of(line) is status):
                    yield line

    def counts(self) -> dict[Status, int]:
        """How many readers have each status (every status present, zero when none)."""
        snapshot = Snapshot.open(self.path)
        if snapshot is None:
            return dict.fromkeys(Status, 0)
        with snapshot:
            state = self._checked(snapshot)
            if state is not None:
                return dict(state.counts)
        counts = dict.fromkeys(Status, 0)
        for _line_no, _line, _fields, status in scan(self.path):  # the stream says where
            counts[status] += 1
        return counts

    def get(self, email: str) -> Subscriber | None:
        """The reader with this address (any spelling of it), or ``None``. In a version 1 list
        the rows of one mailbox are merged as the first change will merge them."""
        normal = normal_or_none(email)
        if normal is None:
            return None
        key = mailbox_key(normal)
        snapshot = Snapshot.open(self.path)
        if snapshot is None:
            return None
        with snapshot:
            if self._checked(snapshot) is not None:
                line = snapshot.locate(key).line
                return parse_line(line) if line is not None else None
        found = [
            build(fields, status)
            for _line_no, _line, fields, status in scan(self.path)
            if mailbox_key(fields[0]) == key
        ]
        if len(found) > 1:
            return merge_variants(found)
        return found[0] if found else None

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        """The addresses on the list whose ``hint_of(address)`` is ``hint`` (an empty hint is
        never looked up), from the hint table of this version of the list: kept in the index,
        or built by one pass over the file (one table per ``hint_of``, at most two kept)."""
        if not hint:
            return []
        snapshot = Snapshot.open(self.path)
        if snapshot is None:
            return []
        with snapshot:
            return self._table(snapshot, hint_of).find(hint, snapshot, hint_of)

    def _table(self, snapshot: Snapshot, hint_of: HintOf) -> HintTable:
        """The hint table of ``hint_of`` for ``snapshot``'s file: in memory, in the index, or
        built (by the checked scan when the file is not known yet)."""
        check = key_check(hint_of)
        if self._tables_for != snapshot.identity:
            self._tables, self._tables_for = {}, snapshot.identity
        table = self._tables.get(check)
        if table is None:
            table = self.index.table(snapshot.identity, check)
        if table is None:
            if self._known(snapshot) is not None:
                table = _hash_rows(snapshot, check, hint_of)
            else:
                found = survey(snapshot, hint_of)
                if found.usable:
                    self._state = found.state
                table = found.table or _hash_rows(snapshot, check, hint_of)
        if len(self._tables) >= 2 and check not in self._tables:
            self._tables.clear()
        self._tables[check] = table
        return table

    def _tables_of(self, identity: Identity) -> list[HintTable]:
        """Every hint table of the file of ``identity``: those in memory, then those kept."""
        tables = dict(self._tables) if self._tables_for == identity else {}
        for check in self.index.checks(identity):
            if check not in tables and len(tables) < 2:
                table = self.index.table(identity, check)
                if table is not None:
                    tables[check] = table
        return list(tables.values())

    # -- changing ------------------------------------------------------------------------------

    @contextmanager
    def edit(self) -> Iterator[ListChanges]:
        """Lock the list, yield its :class:`ListChanges`, and save it atomically when the block
        ends without an exception and something changed. A damaged file raises
        :class:`StateError` before the block runs and is left as it is."""
        with locked(self.path, removed=self.erased):
            self.log.check()
            with self._changing() as roster:
                yield roster
            if roster.preferences_changed:  # after the list, under its lock (forgotten: gone)
                self.prefs.save(roster.all_preferences())
            # after the list is saved: its history, the replies, a forgotten reader's traces
            self._stored(_Done(roster.events, roster.forgotten))
            self.mail.put(roster.queued)

    @contextmanager
    def _changing(self) -> Iterator[ListChanges]:
        """The body of :meth:`edit`, for a caller that holds the lock: the list over the file
        itself when it is known in order, else loaded (and put in order) in memory."""
        snapshot = Snapshot.open(self.path)
        try:
            state = self._checked(snapshot) if snapshot is not None else None
            rows: Rows
            tidied = False
            if snapshot is not None and state is not None:
                rows = FileRows(self, snapshot, state)
            else:
                lines, tidied = self._load()
                rows = LoadedRows(lines)
            roster = ListChanges(rows, self.clock, tidied=tidied, preferences=self.prefs.load)
            try:
                yield roster
                if roster.changed:
                    self._save(snapshot, state, roster)
            finally:
                roster.close()
        finally:
            if snapshot is not None:
                snapshot.close()

    def _save(
        self, snapshot: Snapshot | None, state: ListState | None, roster: ListChanges
    ) -> None:
        """Store ``roster``: its changes spliced into the file when there are few and the file
        is as this store writes it, else every row written again."""
        changes = roster.changes()
        if snapshot and state and state.clean and len(changes) <= SPLICE_LIMIT:
            self._splice(snapshot, state, changes)
            return
        self._rewrite(roster.lines())

    def _splice(
        self, snapshot: Snapshot, state: ListState, changes: list[tuple[str, str | None]]
    ) -> None:
        """Write the list with ``changes`` (by mailbox key, in order) put in place of the rows
        they replace, then its index."""
        splices: list[Splice] = []
        edits: list[Edit] = []
        for key, line in changes:
            span = snapshot.locate(key)
            if span.line is None and line is None:
                continue
            splices.append(Splice(span.start, span.end, line))
            edits.append(
                Edit(
                    start=span.start,
                    end=span.end,
                    length=len(line.encode("utf-8")) + 1 if line is not None else 0,
                    old=status_of(span.line) if span.line is not None else None,
                    new=status_of(line) if line is not None else None,
                    kept=span.line is not None
                    and line is not None
                    and row_email(span.line) == row_email(line),
                )
            )
        with atomic_writer(self.path) as replacement:
            write_spliced(snapshot, splices, _raw_fd(replacement))
        new_state = updated(state, edits, stored_identity(self.path))
        tables = [table.moved(edits) for table in self._tables_of(snapshot.identity)]
        self._keep(new_state, tables)

    def _rewrite(self, lines: Iterable[str], stop: Callable[[], bool] | None = None) -> None:
        """Write every row of ``lines`` (in order) as the new list, then its index (its hint
        tables built again when next needed); nothing at all when ``stop()`` says so at the
        end (no row changed)."""
        writer = _Rewriter(self.path)
        try:
            for line in lines:
                writer.write(line)
        except BaseException:
            writer.discard()
            raise
        if stop is not None and stop():
            writer.discard()
            return
        self._keep(writer.finish(), [])

    def _keep(self, state: ListState, tables: list[HintTable]) -> None:
        """Remember the version just written, and keep its index beside it."""
        self._state = state
        self._tables = {table.check: table for table in tables}
        self._tables_for = state.identity
        try:
            self.index.save(state, tables)
        except OSError:  # only a cache: the list is stored, the next command scans it again
            with suppress(OSError):
                self.index.drop()

    def _stored(self, done: _Done) -> None:
        """What follows a saved change (the list's lock held): a forgotten reader's history and
        queued mail erased, then the change's events appended to the consent log (under its
        own lock too, which removes what a killed erase left)."""
        with locked(self.log.path, removed=self.erased):
            self.log.erase(done.forgotten)
            self.log.append(done.events)
        self.mail.forget(done.forgotten)
        if done.forgotten:
            self._forget_preferences(done.forgotten)

    def _forget_preferences(self, forgotten: list[str]) -> None:
        """Drop forgotten readers' preferences (the file is rewritten only when one had some)."""
        stored = self.prefs.load()
        gone = [key for key in map(mailbox_key, forgotten) if key in stored]
        for key in gone:
            del stored[key]
        if gone:
            self.prefs.save(stored)

    def preferences(self) -> dict[str, Preferences]:
        """Every reader's preferences other than the default, by mailbox key (a small file)."""
        return self.prefs.load()

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

    def restore_preferences(self, chosen: Iterable[tuple[str, Preferences]]) -> int:
        """Put ``chosen`` into the preferences file as given, under the list's lock, after
        checking that each is a reader on the list; no event."""
        wanted = to_restore(chosen)
        with locked(self.path, removed=self.erased):
            check_on_list(wanted, [key for key in wanted if self.get(key) is not None])
            stored = self.prefs.load()
            stored.update(wanted)
            self.prefs.save(stored)
        return len(wanted)

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
        """Add each (normalized address, name) by the rules, merged into the list in one
        locked change (:meth:`_merge`)."""
        report = AddReport()

        def add(changes: RosterChanges, items: list[Any]) -> None:
            for email, name in items:
                old = changes.get(email)
                new = changes.add(email, name=name, status=status, via=via, ref=ref)
                if old is None:
                    report.added += 1
                    continue
                if new.name != old.name:
                    report.names_filled += 1
                report.unchanged[old.status.value] = report.unchanged.get(old.status.value, 0) + 1

        def given() -> Iterator[tuple[str, str, tuple[str, str]]]:
            return ((mailbox_key(email), email, (email, name)) for email, name in readers)

        presorted = isinstance(readers, Presorted)
        self._merge(given, add, presorted=presorted, check=_Normalized())
        return report

    def restore(self, readers: Iterable[Subscriber]) -> int:
        """Store each reader's record as given, replacing the reader of that mailbox; a reader
        given twice (in any case) raises :class:`SubscriberError` and stores nothing."""
        count = 0

        def put(changes: RosterChanges, items: list[Any]) -> None:
            for line in items:
                _put(changes, parse_line(line))

        def given() -> Iterator[tuple[str, str, str]]:
            nonlocal count
            for reader in readers:
                count += 1
                yield mailbox_key(reader.email), reader.email, format_row(reader)

        self._merge(given, put)
        return count

    def _merge(
        self,
        given: Callable[[], Iterable[tuple[str, str, Any]]],
        apply: Callable[[RosterChanges, list[Any]], None],
        *,
        presorted: bool = False,
        check: AddressCheck | None = None,
    ) -> None:
        """Merge a stream of (mailbox key, address, item) into the list in one locked change:
        ``apply(changes, items)`` for each mailbox, with ``changes`` holding just that reader
        (or none) and ``items`` what was given for it, in the order given.

        What ``given()`` yields is sorted by mailbox key first (in runs of :data:`RUN`
        spilled beside the list, removed when done; a killed run's files are removed with the
        lock, as any temporary copy of the list), unless it comes ``presorted`` (its order is
        then checked as it is read, and ``given()`` may be called again). Then few mailboxes
        are looked up and spliced in, many are merged with the list as it streams into the
        new file; the consent log gets their events in one append (spilled too on the way),
        after the list is stored. ``check`` normalizes the addresses."""
        with (
            locked(self.path, removed=self.erased),
            SortedSpool(self.folder, f".{LIST_FILE}.") as spool,
        ):
            self.log.check()
            records: Iterator[Record]
            if presorted:
                incoming = _in_order(_numbered(given()))
                head = list(islice(incoming, SPLICE_LIMIT + 1))
                count, records = len(head), chain(head, incoming)
            else:
                for record in _numbered(given()):
                    spool.add(record)
                count, records = spool.count, iter(spool)
            if not count:
                return
            snapshot = Snapshot.open(self.path)
            try:
                state = self._known(snapshot) if snapshot is not None else None
                if snapshot and state and state.clean and count <= SPLICE_LIMIT:
                    self._merge_spliced(snapshot, state, records, apply, check)
                    return
                try:
                    if snapshot is not None and state is None and _version(snapshot) != 2:
                        raise _Unordered
                    self._merge_streamed(snapshot, state, records, apply, check)
                    return
                except _Unordered:
                    if presorted:  # given again, to be sorted with the list in memory
                        for record in _numbered(given()):
                            spool.add(record)
                with self._changing() as roster:  # version 1, or out of order: in memory
                    for _key, _email, items in _groups(spool):
                        apply(roster, items)
                self._stored(_Done(roster.events, roster.forgotten))
            finally:
                if snapshot is not None:
                    snapshot.close()

    def _merge_spliced(
        self,
        snapshot: Snapshot,
        state: ListState,
        incoming: Iterable[Record],
        apply: Callable[[RosterChanges, list[Any]], None],
        check: AddressCheck | None,
    ) -> None:
        applied: list[_RowDone] = []
        changes: list[tuple[str, str | None]] = []
        for key, email, items in _groups(incoming):
            line = snapshot.locate(key).line
            offered = row_email(line) if line is not None else email
            row = _change_row(line, offered, _items(apply, items), self.clock, check)
            if row is not None:
                applied.append(row)
                changes.append((key, row.lines[0] if row.lines else None))
        if changes:
            self._splice(snapshot, state, changes)
            self._stored(_Done.of(applied))

    def _merge_streamed(
        self,
        snapshot: Snapshot | None,
        state: ListState | None,
        incoming: Iterable[Record],
        apply: Callable[[RosterChanges, list[Any]], None],
        check: AddressCheck | None,
    ) -> None:
        check = check or AddressCheck()
        changed = 0
        with _spill(self.folder) as (events, spilled):

            def rows() -> Iterator[str]:
                nonlocal changed
                stored = _stored_lines(snapshot, state) if snapshot is not None else iter(())
                line = next(stored, None)
                line_key = row_key(line) if line is not None else ""
                for key, email, items in _groups(incoming):
                    while line is not None and line_key < key:
                        yield line
                        line = next(stored, None)
                        line_key = row_key(line) if line is not None else ""
                    old = None
                    if line is not None and line_key == key:
                        old, line = line, next(stored, None)
                        line_key = row_key(line) if line is not None else ""
                    offered = row_email(old) if old is not None else email
                    row = _change_row(old, offered, _items(apply, items), self.clock, check)
                    if row is None:
                        if old is not None:
                            yield old
                        continue
                    changed += 1
                    for event in row.events:
                        events.write(format_event(event) + "\n")
                    yield from row.lines
                while line is not None:
                    yield line
                    line = next(stored, None)

            self._rewrite(rows(), stop=lambda: not changed)
            if changed:
                events.flush()
                with locked(self.log.path, removed=self.erased):
                    self.log.append_rows(_read_lines(spilled))

    def update_many(
        self,
        wanted: Collection[str],
        change: RowChange,
        *,
        match: Callable[[str], str] | None = None,
    ) -> BulkReport:
        """Apply ``change`` to every reader in ``wanted``: memory grows with the number of
        matches, not with the list.

        Without ``match``, ``wanted`` holds addresses in any spelling (their mailbox keys are
        matched; one that is not an address matches nobody). With ``match``, a reader is
        offered when ``match(stored address)`` is in ``wanted`` as given
        (:func:`~crusader_mail.storage.rules.mailbox_key` on addresses SendGrid lowercased).
        ``change(changes, email)`` gets :class:`ListChanges` holding just that reader, so the
        roster's rules and stamps apply; touching another address raises
        :class:`SubscriberError` and writes nothing.

        Under the list's lock, a known list is searched for each wanted reader when they are
        few (matched by mailbox key), else the file is read row by row and written to a
        temporary file beside it; either replaces the list atomically only if a reader
        changed. A damaged file raises :class:`StateError` naming the line and is left as it
        is. A hand-edited file whose rows are out of order, or a version 1 list, is put in
        order in memory, as :meth:`edit` does."""
        if match is None:
            keys = {mailbox_key(normal) for normal in map(normal_or_none, wanted) if normal}
        else:
            keys = set(wanted)
        key_of = match or mailbox_key
        with locked(self.path, removed=self.erased):
            self.log.check()
            done: dict[str, _RowDone | None] = {}
            report = None
            snapshot = Snapshot.open(self.path)
            if snapshot is not None:
                with snapshot:
                    state = self._known(snapshot)
                    by_key = match is None or match is mailbox_key
                    if state is not None and state.clean and by_key and len(keys) <= SPLICE_LIMIT:
                        report, applied = self._looked_up(snapshot, state, keys, change)
                        if report.written:
                            self._stored(_Done.of(applied))
                        return report
                    with suppress(_Unordered):
                        report = self._stream_update(snapshot, state, keys, change, key_of, done)
            if report is None:  # no list, or rows out of order: in memory, as edit() does
                with self._changing() as roster:
                    report, applied = _update_in_memory(
                        roster, keys, change, key_of, self.clock, done
                    )
                    report.written = roster.changed
            else:
                applied = [row for row in done.values() if row is not None]
            if report.written:
                self._stored(_Done.of(applied))
        return report

    def _looked_up(
        self, snapshot: Snapshot, state: ListState, keys: Collection[str], change: RowChange
    ) -> tuple[BulkReport, list[_RowDone]]:
        """:meth:`update_many` by binary search (lock held, the file known and clean)."""
        report = BulkReport()
        applied: list[_RowDone] = []
        changes: list[tuple[str, str | None]] = []
        for key in sorted(keys):
            line = snapshot.locate(key).line
            if line is None:
                continue
            report.matched += 1
            row = _change_row(line, row_email(line), change, self.clock)
            if row is not None:
                report.changed += 1
                applied.append(row)
                changes.append((key, row.lines[0] if row.lines else None))
        if changes:
            self._splice(snapshot, state, changes)
            report.written = True
        return report, applied

    def _stream_update(
        self,
        snapshot: Snapshot,
        state: ListState | None,
        keys: Collection[str],
        change: RowChange,
        key_of: Callable[[str], str],
        done: dict[str, _RowDone | None],
    ) -> BulkReport:
        """The streaming pass of :meth:`update_many` (lock held): every row copied to the new
        file, the wanted ones changed on the way (:class:`_Unordered` when the list must be
        put in order first: nothing is written then)."""
        report = BulkReport()
        changed: list[str | None] = []

        def rows() -> Iterator[str]:
            for line in _stored_lines(snapshot, state):
                email = row_email(line)
                if key_of(email) in keys:
                    report.matched += 1
                    row = done[line] = _change_row(line, email, change, self.clock)
                    if row is not None:
                        report.changed += 1
                        changed.append(row.lines[0] if row.lines else None)
                        yield from row.lines
                        continue
                yield line

        self._rewrite(rows(), stop=lambda: not report.changed)
        report.written = bool(report.changed)
        return report

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


class FileRows:
    """The rows of a checked, sorted list file, read where they are (:class:`Rows`)."""

    def __init__(self, owner: SubscriberList, snapshot: Snapshot, state: ListState) -> None:
        self._owner = owner
        self._snapshot = snapshot
        self._state = state

    def line(self, key: str) -> str | None:
        return self._snapshot.locate(key).line

    def lines(self) -> Iterator[str]:
        return _lines(self._snapshot)

    def __len__(self) -> int:
        return self._state.total

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        if not hint:
            return []
        return self._owner._table(self._snapshot, hint_of).find(hint, self._snapshot, hint_of)


def _lines(snapshot: Snapshot) -> Iterator[str]:
    """Every row of a checked file as stored, in order (blank lines skipped)."""
    for _start, raw in snapshot.rows():
        line = raw.decode("utf-8").rstrip("\r\n")
        if line:
            yield line


class _Unordered(Exception):
    """The list is of version 1, or its rows are out of order: it must be sorted in memory."""


def _stored_lines(snapshot: Snapshot, state: ListState | None) -> Iterator[str]:
    """Every row of ``snapshot``'s file, in order: as stored when its ``state`` is known, else
    checked as they are read (damage raises :class:`StateError` naming the line; a list to
    put in order first raises :class:`_Unordered`)."""
    if state is not None:
        yield from _lines(snapshot)
        return
    handle = os.fdopen(os.dup(snapshot.fd), "rb")
    rows = ListScan(snapshot.path, ordered=False, handle=handle)
    previous = ""
    for _line_no, line, fields, _status in rows:
        key = mailbox_key(fields[0])
        if rows.version != 2 or key <= previous:
            raise _Unordered
        previous = key
        yield line


def _version(snapshot: Snapshot) -> int:
    """The format version of ``snapshot``'s file (its first line)."""
    first = snapshot.raw_line(0).removeprefix(BOM)
    return check_marker(snapshot.path, first.decode("utf-8", "replace"))


def _hash_rows(snapshot: Snapshot, check: str, hint_of: HintOf) -> HintTable:
    """The hint table of a checked file: each row's address hashed, nothing else read."""
    hints, places = array("I"), array("q")
    for start, raw in snapshot.rows():
        comma = raw.find(b",")
        if comma < 0:
            continue
        hint = hint_of(raw[:comma].decode("utf-8"))
        if hint:
            hints.append(int.from_bytes(hint[:4], "big"))
            places.append(start)
    return HintTable.build(check, hints, places)


def _groups(incoming: Iterable[Record]) -> Iterator[tuple[str, str, list[Any]]]:
    """(mailbox key, first address given, items in the order given) of each mailbox."""
    key: str | None = None
    email = ""
    items: list[Any] = []
    for record_key, _seq, record_email, item in incoming:
        if record_key != key:
            if key is not None:
                yield key, email, items
            key, email, items = record_key, record_email, []
        items.append(item)
    if key is not None:
        yield key, email, items


def _numbered(given: Iterable[tuple[str, str, Any]]) -> Iterator[Record]:
    """(mailbox key, sequence number, address, item): sorted, the order given is kept."""
    return ((key, seq, email, item) for seq, (key, email, item) in enumerate(given))


class _Normalized(AddressCheck):
    """Addresses in normal form already (what :meth:`SubscriberList.add_many` is given)."""

    def normal(self, raw: str) -> str:
        return raw


def _in_order(records: Iterable[Record]) -> Iterator[Record]:
    """``records`` as they come, checked to come by mailbox key (as they were promised)."""
    previous = ""
    for record in records:
        if record[0] < previous:
            raise SubscriberError("readers promised in mailbox order came out of order")
        previous = record[0]
        yield record


def _items(apply: Callable[[RosterChanges, list[Any]], None], items: list[Any]) -> RowChange:
    """The change of one mailbox: ``apply`` with what was given for it."""
    return lambda changes, _email: apply(changes, items)


def _put(changes: RosterChanges, reader: Subscriber) -> None:
    """Restore ``reader`` as given (``changes`` are this store's :class:`ListChanges`)."""
    if not isinstance(changes, ListChanges):
        raise TypeError("a restore needs the files store's changes")
    changes.put(reader)


@contextmanager
def _spill(folder: Path) -> Iterator[tuple[IO[str], Path]]:
    """A temporary text file beside the list (named as its temporary copies are, so a killed
    writer's is removed with the lock), removed when the block ends."""
    fd, name = tempfile.mkstemp(prefix=f".{LIST_FILE}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle, Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _read_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        for line in handle:
            yield line.rstrip("\n")


def _raw_fd(replacement: Replacement) -> int:
    """The file descriptor under a :class:`Replacement`'s text handle (flushed first)."""
    replacement.text.flush()
    return replacement.text.buffer.fileno()


class _Rewriter:
    """A new list written row by row (a temporary file renamed over the list by
    :meth:`finish`), counting what it writes for the index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._context = atomic_writer(path)
        self._replacement = self._context.__enter__()
        head = file_head()
        self._replacement.text.write(head)
        self.start = self.offset = len(head.encode("utf-8"))
        self.counts = dict.fromkeys(Status, 0)
        self.rows: dict[Status, list[int] | None] = {status: [] for status in Status}

    def write(self, line: str) -> None:
        status = status_of(line)
        self.counts[status] += 1
        kept = self.rows[status]
        if kept is not None:
            kept.append(self.offset)
            if len(kept) > RARE:
                self.rows[status] = None
        text = line + "\n"
        self._replacement.text.write(text)
        self.offset += len(text.encode("utf-8")) if not text.isascii() else len(text)

    def discard(self) -> None:
        self._replacement.discard()
        self._context.__exit__(None, None, None)

    def finish(self) -> ListState:
        """Rename the new list over the old one; its state."""
        self._context.__exit__(None, None, None)
        return ListState(
            stored_identity(self.path),
            start=self.start,
            clean=True,
            counts=self.counts,
            rows={status: kept for status, kept in self.rows.items() if kept is not None},
        )


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


def _change_row(
    line: str | None,
    email: str,
    change: RowChange,
    clock: Clock,
    check: AddressCheck | None = None,
) -> _RowDone | None:
    """Run ``change`` on a roster of one row (``None``: of no row, for a new reader); what it
    made of the row, or ``None`` when it changed nothing."""
    roster = ListChanges(OneRow(line), clock, check=check)
    try:
        change(roster, email)
        if not roster.changed:
            return None
        changes = roster.changes()
        row = _RowDone([new for _key, new in changes if new], roster.events, roster.forgotten)
    finally:
        roster.close()
    if any(key != mailbox_key(email) for key, _new in changes):
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
