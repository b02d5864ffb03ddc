"""What a full checked scan of the list found, kept beside it so the next command need not scan
again: ``subscribers_dir/.subscribers-index/`` (never committed: ``.gitignore``).

::

    .subscribers-index/list.json            ListState: the file's identity, where its rows
                                            start, counts by status, the offsets of the rows
                                            of each rare status, the hint tables below
    .subscribers-index/hints-<check>-<tag>.bin
                                            HintTable: the rows by token hint, for one
                                            ``hint_of`` (``check`` = its hint of a fixed
                                            address: another secret, another table)

The index describes one version of the list: the :data:`~.list_file.Identity` it was made for
(device, inode, size, modification and change times) and the SHA-256 of its bytes. A save
renames a new file over the list, git writes a new file on checkout, an editor rewrites or
appends: each gives the list another identity. An index of another identity is used only when
the list has its size and its digest (the same bytes: a fresh checkout of the committed list
with the index restored beside it, as the workflows do); it is then kept again for the new
identity. Otherwise it is never used (the next command scans the list again, checking every
row, as before this index). Only a writer of the list makes the index, under the list's lock
and after the list itself is stored: from what the old index said and what the writer changed
(:class:`Edit`: the byte ranges replaced), it computes the new one without reading the list
again (:func:`updated`), then hashes the new file once. A command that changes nothing writes
no list and no new index (it may only move an index of the same bytes to the new identity).
A crash between the list and its index leaves an index of the old bytes: unused.

The offsets are byte offsets of row starts in the file of that identity; nothing in the index
is an address (a forgotten reader's row offset and hint go with their row). A hint table holds
the first 4 bytes of each row's hint, sorted, with the row's offset; rows written since it was
made (``extra``) are hashed when looked up, and folded into the table once there are many.
Every address a table gives is read from the list and hashed again, so a hint shared by two
readers, or a table that is wrong, can only make a reader not found, never the wrong one.
"""

from __future__ import annotations

import hashlib
import json
import os
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crusader_mail.models import Status
from crusader_mail.storage.contract import HintOf
from crusader_mail.storage.files.list_file import Identity, Snapshot, content_digest
from crusader_mail.storage.files.list_format import ListScan, Row
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.statefile import atomic_write, atomic_writer

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

INDEX_DIR = ".subscribers-index"
STATE_FILE = "list.json"
FORMAT = "crusader-mail/list-index"
VERSION = 1
RARE = 5000
"""A status with at most this many readers keeps its rows' offsets (``pending``, usually):
``iter(status)`` reads just those rows."""
CHECK_ADDRESS = "Index-Check@Crusader-Mail.invalid"
"""The address whose hint names a table's ``hint_of`` (mixed case: the old-form hint of an
all-lowercase address is empty)."""
EXTRA_LIMIT = 1000
"""Rows a table hashes at each look-up before it folds them in."""


@dataclass
class ListState:
    """One checked version of the list (a version 2 file whose rows are sorted, one per
    mailbox, every one valid): its ``identity``, where its rows ``start``, whether it is
    ``clean`` (exactly as written by this store: its bytes may be copied around a change),
    ``counts`` by status, and the row offsets (in file order) of each status in ``rows``."""

    identity: Identity
    start: int
    clean: bool
    counts: dict[Status, int]
    rows: dict[Status, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Survey:
    """One checked scan of a list file (:meth:`rows` streams it, checking every row: damage
    raises :class:`StateError` naming the line). Once the rows are all read: the file's
    ``version``, whether its keys are in strict order (``ordered``), its counts and rare rows
    in ``state`` (a :class:`ListState` to trust only when ``usable``), and with ``hint_of``
    its hint ``table``. With ``ordered`` rows out of order raise, as :func:`.list_format.scan`
    says."""

    def __init__(
        self, snapshot: Snapshot, hint_of: HintOf | None = None, *, ordered: bool = False
    ) -> None:
        self.snapshot = snapshot
        self.hint_of = hint_of
        self.strict = ordered
        self.version: int | None = None
        self.ordered = True
        self.complete = False
        self.state = ListState(snapshot.identity, 0, False, dict.fromkeys(Status, 0))
        self.table: HintTable | None = None

    @property
    def usable(self) -> bool:
        return self.complete and self.version == 2 and self.ordered

    def rows(self) -> Iterator[Row]:
        snapshot, hint_of = self.snapshot, self.hint_of
        handle = os.fdopen(os.dup(snapshot.fd), "rb")
        rows = ListScan(snapshot.path, ordered=self.strict, handle=handle)
        counts = self.state.counts
        offsets: dict[Status, list[int] | None] = {status: [] for status in Status}
        hints, places = array("I"), array("q")
        previous = ""
        for row in rows:
            email, status = row[2][0], row[3]
            key = mailbox_key(email)
            if key <= previous:
                self.ordered = False
            previous = key
            counts[status] += 1
            kept = offsets[status]
            if kept is not None:
                kept.append(rows.offset)
                if len(kept) > RARE:
                    offsets[status] = None
            if hint_of is not None:
                hint = hint_of(email)
                if hint:
                    hints.append(int.from_bytes(hint[:4], "big"))
                    places.append(rows.offset)
            yield row
        self.version = rows.version
        snapshot.start = self.state.start = rows.start
        self.state.clean = rows.clean and rows.version is not None
        self.state.rows = {status: kept for status, kept in offsets.items() if kept is not None}
        if hint_of is not None:
            self.table = HintTable.build(key_check(hint_of), hints, places)
        self.complete = True


def survey(snapshot: Snapshot, hint_of: HintOf | None = None) -> Survey:
    """Scan ``snapshot``'s file whole (:class:`Survey`); with ``hint_of``, build its hint
    table on the way."""
    found = Survey(snapshot, hint_of)
    for _row in found.rows():
        pass
    return found


def key_check(hint_of: HintOf) -> str:
    """What names the table of ``hint_of``: its hint of :data:`CHECK_ADDRESS`."""
    return "k" + hint_of(CHECK_ADDRESS).hex()


# --- what a writer changed --------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One place a writer changed: the old bytes ``[start, end)`` (``start == end``: a row
    inserted there) now hold ``length`` bytes (0: the row removed); the row's status before
    (``None``: new) and after (``None``: gone), and whether its address is the same
    (``kept``: its hints still hold)."""

    start: int
    end: int
    length: int
    old: Status | None
    new: Status | None
    kept: bool


class Moves:
    """Where each old row start is after ``edits`` (in file order, not overlapping)."""

    def __init__(self, edits: Sequence[Edit]) -> None:
        self.edits = edits
        self.ends = [edit.end for edit in edits]
        self.shift = [0]
        for edit in edits:
            self.shift.append(self.shift[-1] + edit.length - (edit.end - edit.start))

    def new_start(self, index: int) -> int:
        """Where the row written by ``edits[index]`` starts in the new file."""
        return self.edits[index].start + self.shift[index]

    def moved(self, offset: int) -> int:
        """Where an untouched row that started at ``offset`` starts now."""
        return offset + self.shift[bisect_right(self.ends, offset)]

    def gone(self) -> set[int]:
        """The old row starts whose row was removed or rewritten."""
        return {edit.start for edit in self.edits if edit.end > edit.start}


def updated(state: ListState, edits: Sequence[Edit], identity: Identity) -> ListState:
    """The state of the file a writer made from ``state``'s by ``edits``."""
    moves = Moves(edits)
    counts = dict(state.counts)
    gone = moves.gone()
    rows: dict[Status, list[int]] = {
        status: [moves.moved(offset) for offset in kept if offset not in gone]
        for status, kept in state.rows.items()
    }
    for index, edit in enumerate(edits):
        if edit.old is not None:
            counts[edit.old] -= 1
        if edit.new is not None:
            counts[edit.new] += 1
            kept = rows.get(edit.new)
            if kept is not None:
                kept.append(moves.new_start(index))
    for status in list(rows):
        if len(rows[status]) > RARE:
            del rows[status]
        else:
            rows[status].sort()
    return ListState(identity, state.start, state.clean, counts, rows)


# --- hint tables ------------------------------------------------------------------------------


class HintTable:
    """The rows of one version of the list by token hint, for the ``hint_of`` of ``check``:
    ``hints`` (first 4 bytes, sorted) beside ``offsets``, and ``extra`` rows not hashed yet."""

    def __init__(
        self,
        check: str,
        hints: NDArray[np.uint32],
        offsets: NDArray[np.int64],
        extra: NDArray[np.int64],
    ) -> None:
        self.check = check
        self.hints = hints
        self.offsets = offsets
        self.extra = extra
        self.changed = False  # folded since it was read: worth writing with the next save

    @classmethod
    def build(cls, check: str, hints: array[int], offsets: array[int]) -> HintTable:
        """The table of rows at ``offsets`` whose hints start with ``hints``
        (``array("I")`` and ``array("q")``, in any order)."""
        import numpy as np

        keys = np.frombuffer(hints, dtype=np.uint32) if hints else np.zeros(0, np.uint32)
        places = np.frombuffer(offsets, dtype=np.int64) if offsets else np.zeros(0, np.int64)
        order = np.argsort(keys, kind="stable")
        table = cls(check, keys[order], places[order], np.zeros(0, dtype=np.int64))
        table.changed = True
        return table

    def find(self, hint: bytes, snapshot: Snapshot, hint_of: HintOf) -> list[str]:
        """The addresses of the rows whose ``hint_of`` is ``hint``, in file order."""
        import numpy as np

        if len(self.extra) > EXTRA_LIMIT:
            self._fold(snapshot, hint_of)
        value = int.from_bytes(hint[:4], "big")
        low = int(np.searchsorted(self.hints, value, side="left"))
        high = int(np.searchsorted(self.hints, value, side="right"))
        places = sorted({int(place) for place in self.offsets[low:high]} | set(self.extra.tolist()))
        found = []
        for place in places:
            email = snapshot.email_at(place)
            if hint_of(email) == hint:
                found.append(email)
        return found

    def _fold(self, snapshot: Snapshot, hint_of: HintOf) -> None:
        import numpy as np

        hints, places = [], []
        for place in self.extra.tolist():
            hint = hint_of(snapshot.email_at(place))
            if hint:
                hints.append(int.from_bytes(hint[:4], "big"))
                places.append(place)
        keys = np.concatenate([self.hints, np.array(hints, dtype=np.uint32)])
        offsets = np.concatenate([self.offsets, np.array(places, dtype=np.int64)])
        order = np.argsort(keys, kind="stable")
        self.hints, self.offsets = keys[order], offsets[order]
        self.extra = np.zeros(0, dtype=np.int64)
        self.changed = True

    def moved(self, edits: Sequence[Edit]) -> HintTable:
        """This table for the file a writer made by ``edits``: untouched rows moved, removed
        and re-spelled rows dropped, new ones to be hashed when looked up."""
        import numpy as np

        moves = Moves(edits)
        ends = np.array(moves.ends, dtype=np.int64)
        shift = np.array(moves.shift, dtype=np.int64)
        gone = np.array(
            sorted({e.start for e in edits if e.end > e.start and not (e.kept and e.new)}),
            dtype=np.int64,
        )
        keep = ~np.isin(self.offsets, gone)
        offsets = self.offsets[keep]
        offsets = offsets + shift[np.searchsorted(ends, offsets, side="right")]
        extra = self.extra[~np.isin(self.extra, gone)]
        extra = extra + shift[np.searchsorted(ends, extra, side="right")]
        new = [
            moves.new_start(index)
            for index, edit in enumerate(edits)
            if edit.new is not None and not (edit.kept and edit.end > edit.start)
        ]
        table = HintTable(
            self.check,
            self.hints[keep],
            offsets,
            np.concatenate([extra, np.array(new, dtype=np.int64)]),
        )
        table.changed = True
        return table


# --- the folder -------------------------------------------------------------------------------


class IndexFolder:
    """``folder/.subscribers-index/``: the index of the list in ``folder``; with ``list_path``
    (the list file) it keeps the list's digest and follows the same bytes to a new identity."""

    def __init__(self, folder: Path, list_path: Path | None = None) -> None:
        self.path = folder / INDEX_DIR
        self.list_path = list_path
        self._hashed: tuple[Identity, str | None] | None = None  # the last digest computed

    def load(self, identity: Identity) -> ListState | None:
        """The state kept for the list of ``identity``; ``None`` when there is none (or it is
        of other bytes, or unreadable: the caller scans the list)."""
        data = self._record(identity)
        if data is None:
            return None
        try:
            return ListState(
                identity=identity,
                start=int(data["start"]),
                clean=bool(data["clean"]),
                counts={Status(name): int(n) for name, n in data["counts"].items()},
                rows={Status(name): [int(o) for o in kept] for name, kept in data["rows"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def table(self, identity: Identity, check: str) -> HintTable | None:
        """The hint table of ``check`` kept for the list of ``identity``, ``None`` if none."""
        import numpy as np

        data = self._record(identity)
        if data is None:
            return None
        entry = data.get("hints", {}).get(check)
        if not isinstance(entry, list) or len(entry) != 3:
            return None
        name, count, extra = entry
        if not isinstance(count, int) or not isinstance(extra, int):
            return None
        try:
            with (self.path / str(name)).open("rb") as handle:
                if os.fstat(handle.fileno()).st_size != 12 * count + 8 * extra:
                    return None
                hints = np.fromfile(handle, dtype="<u4", count=count).astype(np.uint32, copy=False)
                offsets = np.fromfile(handle, dtype="<i8", count=count).astype(np.int64, copy=False)
                more = np.fromfile(handle, dtype="<i8", count=extra).astype(np.int64, copy=False)
        except (OSError, ValueError):
            return None
        return HintTable(check, hints, offsets, more)

    def checks(self, identity: Identity) -> list[str]:
        """The checks of the hint tables kept for the list of ``identity``."""
        data = self._record(identity)
        if data is None:
            return []
        return [str(check) for check in data.get("hints", {})]

    def save(self, state: ListState, tables: Iterable[HintTable]) -> None:
        """Keep ``state`` and ``tables`` (the tables first, then the state naming them), and
        remove every other file of the folder."""
        self.path.mkdir(exist_ok=True)
        tag = hashlib.sha256(repr(state.identity).encode()).hexdigest()[:12]
        entries: dict[str, list[Any]] = {}
        for table in tables:
            name = f"hints-{table.check}-{tag}.bin"
            with atomic_writer(self.path / name) as replacement:
                handle = replacement.text.buffer
                for part, kind in (
                    (table.hints, "<u4"),
                    (table.offsets, "<i8"),
                    (table.extra, "<i8"),
                ):
                    handle.write(part.astype(kind, copy=False).tobytes())
            entries[table.check] = [name, len(table.hints), len(table.extra)]
        record = {
            "format": FORMAT,
            "version": VERSION,
            "identity": list(state.identity),
            "start": state.start,
            "clean": state.clean,
            "counts": {status.value: n for status, n in state.counts.items()},
            "rows": {status.value: kept for status, kept in state.rows.items()},
            "hints": entries,
        }
        digest = self._digest(state.identity)
        if digest is not None:
            record["digest"] = digest
        atomic_write(self.path / STATE_FILE, json.dumps(record, separators=(",", ":")))
        keep = {STATE_FILE, *(entry[0] for entry in entries.values())}
        for path in self.path.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def drop(self) -> None:
        """Forget the index (the list was written by a writer that keeps none)."""
        (self.path / STATE_FILE).unlink(missing_ok=True)

    def _record(self, identity: Identity) -> dict[str, Any] | None:
        """The record kept for the list of ``identity``: made for it, or made for a file of
        the same size and digest (then kept again for ``identity``, when the folder allows)."""
        data = self._read()
        if data is None:
            return None
        kept = tuple(data.get("identity", ()))
        if kept == identity:
            return data
        digest = data.get("digest")
        if not isinstance(digest, str) or len(kept) != len(identity) or kept[2] != identity[2]:
            return None
        if self._digest(identity) != digest:
            return None
        data["identity"] = list(identity)
        with suppress(OSError):  # only a cache: the next command hashes the list again
            atomic_write(self.path / STATE_FILE, json.dumps(data, separators=(",", ":")))
        return data

    def _digest(self, identity: Identity) -> str | None:
        """The digest of the list file while it is the file of ``identity`` (hashed once)."""
        if self.list_path is None:
            return None
        if self._hashed is None or self._hashed[0] != identity:
            self._hashed = (identity, content_digest(self.list_path, identity))
        return self._hashed[1]

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.path / STATE_FILE).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        if data.get("version") != VERSION:
            return None
        return data
