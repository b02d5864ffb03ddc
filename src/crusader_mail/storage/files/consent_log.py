"""The files store's consent history: ``subscribers_dir/consent-log.csv``.

::

    # crusader-mail consent log v1
    at,email,action,status,via,ref
    2026-11-23T09:00:00Z,jane@example.com,request,pending,email,<m1@reader.example>

One row per change of a reader (:func:`~crusader_mail.storage.rows.format_event`), in the order
the changes were stored. The roster appends a change's events under the list's lock (and the
log's own, whose taking removes what a killed writer left), right after the list was saved (:meth:`ConsentLog.append`: whole lines written at the end,
then fsynced), so a crash between the two can lose one change's events but never records a
change that was not stored. Rows are never rewritten: only :meth:`ConsentLog.erase` (a reader
forgotten or expired) replaces the file, atomically, without that reader's rows. An unfinished
last line (an append cut short by a crash) is skipped when read and cut off by the next append.
The file lives beside the list because it holds addresses; git merges it as a union of lines
(``.gitattributes``), so two runs' appends are both kept. A damaged row raises
:class:`StateError` naming the line.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator
from itertools import chain, islice
from pathlib import Path

from crusader_mail.errors import StateError
from crusader_mail.models import ConsentEvent
from crusader_mail.storage.rows import (
    EVENT_HEADER,
    AddressCheck,
    RowProblem,
    format_event,
    parse_event,
)
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.statefile import atomic_writer, fsync_dir

LOG_FILE = "consent-log.csv"
MARKER = "# crusader-mail consent log v1"
_HEAD = f"{MARKER}\n{EVENT_HEADER}\n"


class ConsentLog:
    """``folder/consent-log.csv``. Writers hold the list's lock (the roster's); readers need
    none: an append only adds whole lines at the end, an erase replaces the file in one rename."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOG_FILE

    def append(self, events: Iterable[ConsentEvent]) -> int:
        """Add ``events`` at the end and fsync; how many (nothing is written for none)."""
        return self.append_rows(format_event(event) for event in events)

    def append_rows(self, rows: Iterable[str]) -> int:
        """Add history rows (:func:`~crusader_mail.storage.rows.format_event`) at the end, a
        few thousand at a time, then fsync once; how many (nothing is written for none)."""
        stream = iter(rows)
        first = next(stream, None)
        if first is None:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        count = 0
        with self.path.open("ab") as handle:
            kept = self._kept()
            if kept < handle.tell():
                handle.truncate(kept)  # the rest of an append cut short by a crash
            if kept == 0:
                handle.write(_HEAD.encode("utf-8"))
            stream = chain([first], stream)
            while chunk := list(islice(stream, 4096)):
                handle.write("".join(row + "\n" for row in chunk).encode("utf-8"))
                count += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            fsync_dir(self.path.parent)
        return count

    def check(self) -> None:
        """Raise :class:`StateError` when the file is there and is not a consent log (a writer
        calls it before it changes anything, so a damaged log stops the change whole)."""
        if self.path.exists():
            self._kept()

    def _kept(self) -> int:
        """How much of the file an append keeps: up to its last complete line, nothing when
        even the head lines were cut short; :class:`StateError` when the head is not ours."""
        head = _HEAD.encode("utf-8")
        with self.path.open("rb") as handle:
            start = handle.read(len(head))
        if len(start) < len(head) and head.startswith(start):
            return 0  # no file yet, or its very first write was cut short
        if start != head:
            raise StateError(f"{self.path}, line 1: not a consent log (expected {MARKER!r})")
        return _complete_length(self.path)

    def events(self) -> Iterator[ConsentEvent]:
        """Every event, in the order stored, one row at a time."""
        for _line_no, event in self._rows():
            yield event

    def of(self, email: str) -> list[ConsentEvent]:
        """The events of the reader of ``email`` (by mailbox key), oldest first."""
        key = mailbox_key(email)
        found = [event for event in self.events() if mailbox_key(event.email) == key]
        return sorted(found, key=lambda event: event.at)

    def erase(self, emails: Collection[str]) -> None:
        """Drop every row of these mailboxes (any spelling), replacing the file atomically;
        nothing is written when none has a row."""
        gone = {mailbox_key(email) for email in emails}
        if not gone or not self.path.exists():
            return
        with atomic_writer(self.path) as replacement:
            replacement.text.write(_HEAD)
            dropped = 0
            for line in self._lines():
                if mailbox_key(_row_email(line)) in gone:
                    dropped += 1
                else:
                    replacement.text.write(line + "\n")
            if not dropped:
                replacement.discard()

    # -- reading -------------------------------------------------------------------------------

    def _rows(self) -> Iterator[tuple[int, ConsentEvent]]:
        check = AddressCheck()
        for line_no, line in enumerate(self._lines(), start=3):
            try:
                yield line_no, parse_event(line, check)
            except RowProblem as problem:
                raise StateError(f"{self.path}, line {line_no}: {problem}") from None

    def _lines(self) -> Iterator[str]:
        """The row lines after the two head lines, checked; an unfinished last line skipped."""
        try:
            handle = self.path.open(encoding="utf-8", newline="")
        except FileNotFoundError:
            return
        with handle:
            try:
                head = [handle.readline(), handle.readline()]
                if head[0] and not head[0].endswith("\n"):
                    return  # the first append was cut short
                if head[0].rstrip("\r\n") != MARKER:
                    raise StateError(
                        f"{self.path}, line 1: not a consent log (expected {MARKER!r})"
                    )
                if head[1].endswith("\n") and head[1].rstrip("\r\n") != EVENT_HEADER:
                    raise StateError(f"{self.path}, line 2: the header is not {EVENT_HEADER!r}")
                for raw in handle:
                    if not raw.endswith("\n"):
                        return
                    line = raw.rstrip("\r\n")
                    if line:
                        yield line
            except UnicodeDecodeError:
                raise StateError(f"{self.path}: not UTF-8 text") from None


def _row_email(line: str) -> str:
    """The address of a history row (the second field, never quoted)."""
    return line.split(",", 2)[1]


def _complete_length(path: Path) -> int:
    """The length of ``path`` up to the end of its last complete line."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        position = size
        while position > 0:
            step = min(4096, position)
            handle.seek(position - step)
            chunk = handle.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return position - step + newline + 1
            position -= step
    return 0
