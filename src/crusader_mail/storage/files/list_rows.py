"""Whole rows of the list file: read from a snapshot (as stored, or checked as they come),
hashed for a hint table, written again in order (:class:`Rewriter`), or put in order in memory
(:func:`merge_case_variants`, for a version 1 list). Used by :mod:`.subscribers`."""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from crusader_mail.errors import StateError
from crusader_mail.models import Status
from crusader_mail.storage.contract import HintOf
from crusader_mail.storage.files.list_file import Snapshot, stored_identity
from crusader_mail.storage.files.list_format import (
    BOM,
    ListScan,
    check_marker,
    file_head,
    order_problem,
    row_key,
    scan,
)
from crusader_mail.storage.files.list_index import RARE, HintTable, ListState
from crusader_mail.storage.rows import format_row, parse_line, split_line, status_of
from crusader_mail.storage.rules import mailbox_key, merge_variants
from crusader_mail.util.masking import mask_email
from crusader_mail.util.statefile import Replacement, atomic_writer

SPLICE_LIMIT = 20_000
"""At most this many changed rows are looked up one by one and spliced in; more, and the
writer streams the whole file instead (one pass, in order)."""


def rows_of(snapshot: Snapshot) -> Iterator[str]:
    """Every row of a checked file as stored, in order (blank lines skipped)."""
    for _start, raw in snapshot.rows():
        line = raw.decode("utf-8").rstrip("\r\n")
        if line:
            yield line


class Unordered(Exception):
    """The list is of version 1, or its rows are out of order: it must be sorted in memory."""


def checked_rows(snapshot: Snapshot, state: ListState | None) -> Iterator[str]:
    """Every row of ``snapshot``'s file, in order: as stored when its ``state`` is known, else
    checked as they are read (damage raises :class:`StateError` naming the line; a list to
    put in order first raises :class:`Unordered`)."""
    if state is not None:
        yield from rows_of(snapshot)
        return
    handle = os.fdopen(os.dup(snapshot.fd), "rb")
    rows = ListScan(snapshot.path, ordered=False, handle=handle)
    previous = ""
    for _line_no, line, fields, _status in rows:
        key = mailbox_key(fields[0])
        if rows.version != 2 or key <= previous:
            raise Unordered
        previous = key
        yield line


def version_of(snapshot: Snapshot) -> int:
    """The format version of ``snapshot``'s file (its first line)."""
    first = snapshot.raw_line(0).removeprefix(BOM)
    return check_marker(snapshot.path, first.decode("utf-8", "replace"))


def hash_rows(snapshot: Snapshot, check: str, hint_of: HintOf) -> HintTable:
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


@contextmanager
def spill(path: Path) -> Iterator[tuple[IO[str], Path]]:
    """A temporary text file beside the list at ``path`` (named as its temporary copies are, so
    a killed writer's is removed with the lock), removed when the block ends."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle, Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def read_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        for line in handle:
            yield line.rstrip("\n")


def raw_fd(replacement: Replacement) -> int:
    """The file descriptor under a :class:`Replacement`'s text handle (flushed first)."""
    replacement.text.flush()
    return replacement.text.buffer.fileno()


class Rewriter:
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


def merge_case_variants(lines: list[str], path: Path) -> list[str]:
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


def load_in_order(path: Path) -> tuple[list[str], bool]:
    """The row lines of the list at ``path`` in mailbox-key order, and whether they had to be put in order (a
    hand-edited file, or a version 1 list: its case variants are merged then)."""
    lines: list[str] = []
    previous, in_order = "", True
    rows = scan(path, ordered=False)
    for _line_no, line, fields, _status in rows:
        key = mailbox_key(fields[0])
        if in_order and key <= previous:
            in_order = False
        previous = key
        lines.append(line)
    if rows.version is None or (rows.version == 2 and in_order):  # no file, or in order
        return lines, False
    if rows.version == 2:
        _check_unique(path)
        lines.sort(key=row_key)
        return lines, True
    return merge_case_variants(lines, path), True


def _check_unique(path: Path) -> None:
    """A hand-edited version 2 list holds each mailbox once: else the error names the row."""
    seen: dict[str, tuple[int, str]] = {}
    for line_no, _line, fields, _status in scan(path, ordered=False):
        key = mailbox_key(fields[0])
        if key in seen:
            first_no, first = seen[key]
            raise StateError(order_problem(path, line_no, fields[0], first, first_no))
        seen[key] = (line_no, fields[0])


def active_rows(snapshot: Snapshot) -> Iterator[tuple[str, str]]:
    """(address, name) of every active reader of a checked file, in order: read in 64 KiB
    blocks and its rows split, not checked again (no reader built)."""
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
                fields = split_line(line.rstrip("\r")) if '"' in line else line.split(",", 3)
                if fields[2] == active:
                    yield fields[0], fields[1]
        if not chunk:
            return


class FileRows:
    """The rows of a checked, sorted list file, read where they are (:class:`~.changes.Rows`);
    ``table(snapshot, hint_of)`` gives its hint table for token look-ups."""

    def __init__(
        self,
        snapshot: Snapshot,
        state: ListState,
        table: Callable[[Snapshot, HintOf], HintTable],
    ) -> None:
        self._snapshot = snapshot
        self._state = state
        self._table = table

    def line(self, key: str) -> str | None:
        return self._snapshot.locate(key).line

    def lines(self) -> Iterator[str]:
        return rows_of(self._snapshot)

    def __len__(self) -> int:
        return self._state.total

    def candidates(self, hint: bytes, hint_of: HintOf) -> list[str]:
        if not hint:
            return []
        return self._table(self._snapshot, hint_of).find(hint, self._snapshot, hint_of)
