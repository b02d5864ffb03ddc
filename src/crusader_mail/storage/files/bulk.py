"""Many readers changed at once in the files store's list: an import (:meth:`BulkWriter.add_many`),
a restore (:meth:`BulkWriter.restore`) and the suppression sync (:meth:`BulkWriter.update_many`).

Each reader's change runs on a roster of that one row (:mod:`.row_changes`), so the rules and
consent stamps are those of :meth:`SubscriberList.edit <.subscribers.SubscriberList.edit>`.
A few readers are looked up by binary search and spliced in; many are merged with the list as
it streams into a new file (an import sorts what it is given first, in runs spilled beside the
list): memory grows with the readers changed, not with the list. Everything happens under the
list's lock, and the consent log gets the events once the list is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import suppress
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

from crusader_mail.models import Source, Status, Subscriber
from crusader_mail.storage.contract import AddReport, BulkReport, RosterChanges, RowChange
from crusader_mail.storage.files.list_file import Snapshot
from crusader_mail.storage.files.list_format import row_email, row_key
from crusader_mail.storage.files.list_index import ListState
from crusader_mail.storage.files.list_rows import (
    SPLICE_LIMIT,
    Unordered,
    checked_rows,
    read_lines,
    spill,
    version_of,
)
from crusader_mail.storage.files.row_changes import (
    Done,
    Normalized,
    RowDone,
    change_of,
    change_row,
    groups,
    in_order,
    numbered,
    put_reader,
    update_in_memory,
)
from crusader_mail.storage.rows import AddressCheck, format_event, format_row, parse_line
from crusader_mail.storage.rules import mailbox_key, normal_or_none
from crusader_mail.util.spool import Presorted, Record, SortedSpool
from crusader_mail.util.statefile import locked

if TYPE_CHECKING:
    from crusader_mail.storage.files.subscribers import SubscriberList


class BulkWriter:
    """The bulk changes of one :class:`SubscriberList` (which hands its calls here)."""

    def __init__(self, owner: SubscriberList) -> None:
        self.list = owner

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
        self._merge(given, add, presorted=presorted, check=Normalized())
        return report

    def restore(self, readers: Iterable[Subscriber]) -> int:
        """Store each reader's record as given, replacing the reader of that mailbox; a reader
        given twice (in any case) raises :class:`SubscriberError` and stores nothing."""
        count = 0

        def put(changes: RosterChanges, items: list[Any]) -> None:
            for line in items:
                put_reader(changes, parse_line(line))

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
            locked(self.list.path, removed=self.list.erased),
            SortedSpool(self.list.folder, f".{self.list.path.name}.") as spool,
        ):
            self.list.log.check()
            records: Iterator[Record]
            if presorted:
                incoming = in_order(numbered(given()))
                head = list(islice(incoming, SPLICE_LIMIT + 1))
                count, records = len(head), chain(head, incoming)
            else:
                for record in numbered(given()):
                    spool.add(record)
                count, records = spool.count, iter(spool)
            if not count:
                return
            snapshot = Snapshot.open(self.list.path)
            try:
                state = self.list.known(snapshot) if snapshot is not None else None
                if snapshot and state and state.clean and count <= SPLICE_LIMIT:
                    self._merge_spliced(snapshot, state, records, apply, check)
                    return
                try:
                    if snapshot is not None and state is None and version_of(snapshot) != 2:
                        raise Unordered
                    self._merge_streamed(snapshot, state, records, apply, check)
                    return
                except Unordered:
                    if presorted:  # given again, to be sorted with the list in memory
                        for record in numbered(given()):
                            spool.add(record)
                with self.list.changing() as roster:  # version 1, or out of order: in memory
                    for _key, _email, items in groups(spool):
                        apply(roster, items)
                self.list.stored(Done(roster.events, roster.forgotten))
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
        applied: list[RowDone] = []
        changes: list[tuple[str, str | None]] = []
        for key, email, items in groups(incoming):
            line = snapshot.locate(key).line
            offered = row_email(line) if line is not None else email
            row = change_row(line, offered, change_of(apply, items), self.list.clock, check)
            if row is not None:
                applied.append(row)
                changes.append((key, row.lines[0] if row.lines else None))
        if changes:
            self.list.splice(snapshot, state, changes)
            self.list.stored(Done.of(applied))

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
        with spill(self.list.path) as (events, spilled):

            def rows() -> Iterator[str]:
                nonlocal changed
                stored = checked_rows(snapshot, state) if snapshot is not None else iter(())
                line = next(stored, None)
                line_key = row_key(line) if line is not None else ""
                for key, email, items in groups(incoming):
                    while line is not None and line_key < key:
                        yield line
                        line = next(stored, None)
                        line_key = row_key(line) if line is not None else ""
                    old = None
                    if line is not None and line_key == key:
                        old, line = line, next(stored, None)
                        line_key = row_key(line) if line is not None else ""
                    offered = row_email(old) if old is not None else email
                    row = change_row(old, offered, change_of(apply, items), self.list.clock, check)
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

            self.list.rewrite(rows(), stop=lambda: not changed)
            if changed:
                events.flush()
                with locked(self.list.log.path, removed=self.list.erased):
                    self.list.log.append_rows(read_lines(spilled))

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
        with locked(self.list.path, removed=self.list.erased):
            self.list.log.check()
            done: dict[str, RowDone | None] = {}
            report = None
            snapshot = Snapshot.open(self.list.path)
            if snapshot is not None:
                with snapshot:
                    state = self.list.known(snapshot)
                    by_key = match is None or match is mailbox_key
                    if state is not None and state.clean and by_key and len(keys) <= SPLICE_LIMIT:
                        report, applied = self._looked_up(snapshot, state, keys, change)
                        if report.written:
                            self.list.stored(Done.of(applied))
                        return report
                    with suppress(Unordered):
                        report = self._stream_update(snapshot, state, keys, change, key_of, done)
            if report is None:  # no list, or rows out of order: in memory, as edit() does
                with self.list.changing() as roster:
                    report, applied = update_in_memory(
                        roster, keys, change, key_of, self.list.clock, done
                    )
                    report.written = roster.changed
            else:
                applied = [row for row in done.values() if row is not None]
            if report.written:
                self.list.stored(Done.of(applied))
        return report

    def _looked_up(
        self, snapshot: Snapshot, state: ListState, keys: Collection[str], change: RowChange
    ) -> tuple[BulkReport, list[RowDone]]:
        """:meth:`update_many` by binary search (lock held, the file known and clean)."""
        report = BulkReport()
        applied: list[RowDone] = []
        changes: list[tuple[str, str | None]] = []
        for key in sorted(keys):
            line = snapshot.locate(key).line
            if line is None:
                continue
            report.matched += 1
            row = change_row(line, row_email(line), change, self.list.clock)
            if row is not None:
                report.changed += 1
                applied.append(row)
                changes.append((key, row.lines[0] if row.lines else None))
        if changes:
            self.list.splice(snapshot, state, changes)
            report.written = True
        return report, applied

    def _stream_update(
        self,
        snapshot: Snapshot,
        state: ListState | None,
        keys: Collection[str],
        change: RowChange,
        key_of: Callable[[str], str],
        done: dict[str, RowDone | None],
    ) -> BulkReport:
        """The streaming pass of :meth:`update_many` (lock held): every row copied to the new
        file, the wanted ones changed on the way (:class:`Unordered` when the list must be
        put in order first: nothing is written then)."""
        report = BulkReport()
        changed: list[str | None] = []

        def rows() -> Iterator[str]:
            for line in checked_rows(snapshot, state):
                email = row_email(line)
                if key_of(email) in keys:
                    report.matched += 1
                    row = done[line] = change_row(line, email, change, self.list.clock)
                    if row is not None:
                        report.changed += 1
                        changed.append(row.lines[0] if row.lines else None)
                        yield from row.lines
                        continue
                yield line

        self.list.rewrite(rows(), stop=lambda: not report.changed)
        report.written = bool(report.changed)
        return report
