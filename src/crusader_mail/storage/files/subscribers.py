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
  :class:`~crusader_mail.storage.files.changes.ListChanges` over the file itself (:class:`~.list_rows.FileRows`:
  rows found by binary search, only the changed ones held). The save writes a whole new file
  atomically (temporary file, fsync, rename, under the lock): the old bytes are copied around
  the changed rows (:func:`.list_file.write_spliced`), so a change costs one copy of the file
  (about 0.1 s for a million readers) and memory for the changed rows only.
- Changes of many readers at once are in :mod:`.bulk` (each reader through
  :mod:`.row_changes`; whole rows read and written by :mod:`.list_rows`).
  :meth:`SubscriberList.update_many` (the suppression sync) looks its few readers up the same
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

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from itertools import islice
from pathlib import Path

from crusader_mail.clock import Clock
from crusader_mail.models import ConsentEvent, Preferences, Source, Status, Subscriber
from crusader_mail.storage.contract import AddReport, BulkReport, HintOf, RosterChanges, RowChange
from crusader_mail.storage.files.bulk import BulkWriter
from crusader_mail.storage.files.changes import ListChanges, LoadedRows, Rows
from crusader_mail.storage.files.consent_log import ConsentLog
from crusader_mail.storage.files.list_file import (
    Identity,
    Snapshot,
    Splice,
    stored_identity,
    write_spliced,
)
from crusader_mail.storage.files.list_format import (
    row_email,
    scan,
)
from crusader_mail.storage.files.list_index import (
    Edit,
    HintTable,
    IndexFolder,
    ListState,
    Survey,
    key_check,
    survey,
    updated,
)
from crusader_mail.storage.files.list_rows import (
    SPLICE_LIMIT,
    FileRows,
    Rewriter,
    active_rows,
    hash_rows,
    load_in_order,
    raw_fd,
    rows_of,
)
from crusader_mail.storage.files.mail import FileMailQueue
from crusader_mail.storage.files.preferences import PreferenceFile
from crusader_mail.storage.files.row_changes import (
    Done,
)
from crusader_mail.storage.rows import (
    build,
    format_row,
    parse_line,
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
from crusader_mail.util.statefile import atomic_writer, locked

LIST_FILE = "subscribers.csv"


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

    def known(self, snapshot: Snapshot) -> ListState | None:
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
        state = self.known(snapshot)
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
            if self.known(snapshot) is not None:
                yield from active_rows(snapshot)
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
            state = self.known(snapshot)
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
            for line in rows_of(snapshot):
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
            if self.known(snapshot) is not None:
                table = hash_rows(snapshot, check, hint_of)
            else:
                found = survey(snapshot, hint_of)
                if found.usable:
                    self._state = found.state
                table = found.table or hash_rows(snapshot, check, hint_of)
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
            with self.changing() as roster:
                yield roster
            if roster.preferences_changed:  # after the list, under its lock (forgotten: gone)
                self.prefs.save(roster.all_preferences())
            # after the list is saved: its history, the replies, a forgotten reader's traces
            self.stored(Done(roster.events, roster.forgotten))
            self.mail.put(roster.queued)

    @contextmanager
    def changing(self) -> Iterator[ListChanges]:
        """The body of :meth:`edit`, for a caller that holds the lock: the list over the file
        itself when it is known in order, else loaded (and put in order) in memory."""
        snapshot = Snapshot.open(self.path)
        try:
            state = self._checked(snapshot) if snapshot is not None else None
            rows: Rows
            tidied = False
            if snapshot is not None and state is not None:
                rows = FileRows(snapshot, state, self._table)
            else:
                lines, tidied = load_in_order(self.path)
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
            self.splice(snapshot, state, changes)
            return
        self.rewrite(roster.lines())

    def splice(
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
            write_spliced(snapshot, splices, raw_fd(replacement))
        new_state = updated(state, edits, stored_identity(self.path))
        tables = [table.moved(edits) for table in self._tables_of(snapshot.identity)]
        self._keep(new_state, tables)

    def rewrite(self, lines: Iterable[str], stop: Callable[[], bool] | None = None) -> None:
        """Write every row of ``lines`` (in order) as the new list, then its index (its hint
        tables built again when next needed); nothing at all when ``stop()`` says so at the
        end (no row changed)."""
        writer = Rewriter(self.path)
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

    def stored(self, done: Done) -> None:
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

    # -- many readers at once (:mod:`.bulk`) ---------------------------------------------------

    def add_many(
        self, readers: Iterable[tuple[str, str]], *, status: Status, via: Source, ref: str
    ) -> AddReport:
        """Add each (normalized address, name) by the rules, merged into the list in one
        locked change (:meth:`.bulk.BulkWriter.add_many`)."""
        return BulkWriter(self).add_many(readers, status=status, via=via, ref=ref)

    def restore(self, readers: Iterable[Subscriber]) -> int:
        """Store each reader's record as given (:meth:`.bulk.BulkWriter.restore`)."""
        return BulkWriter(self).restore(readers)

    def update_many(
        self,
        wanted: Collection[str],
        change: RowChange,
        *,
        match: Callable[[str], str] | None = None,
    ) -> BulkReport:
        """Apply ``change`` to every reader in ``wanted`` (:meth:`.bulk.BulkWriter.update_many`)."""
        return BulkWriter(self).update_many(wanted, change, match=match)

    def tidy(self) -> bool:
        """Sort a hand-edited file; ``True`` if it was out of order."""
        with self.edit() as roster:
            return roster.changed
