"""One version of the list file, opened for reading by byte offsets: a row found by binary
search, a new file made by copying the bytes around the changed rows.

The rows of a version 2 list are sorted by mailbox key (:mod:`.list_format`), one per line, and
the address is the first field, never quoted: a row's key is the text before its first comma,
lowercased, whatever the rest of the line holds (quotes included). So :meth:`Snapshot.locate`
finds a reader in about ``log2(size / 4 KiB)`` reads of one line, and :func:`write_spliced`
writes the new file as the old bytes, copied by the kernel (``copy_file_range``), with the
changed rows put in their places: O(file) bytes written, but no row read, parsed or held.

Both trust what a full checked scan of this very file found (sorted, one row per mailbox,
every row valid; :class:`~crusader_mail.storage.files.list_index.ListState`), so a
:class:`Snapshot` is tied to the file it opened: the name may be replaced by a newer version
meanwhile (a save renames over it), the open file stays the one that was checked.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from crusader_mail.storage.rules import mailbox_key

Identity = tuple[int, int, int, int, int]
"""Which file a name pointed to: device, inode, size, modification and change times (ns).

A save renames a new file over the list (a new inode), git writes a new file on checkout, an
editor rewrites or appends (new times); the change time cannot be set back by hand."""

WINDOW = 16 * 1024  # below this many bytes the search reads the rows one after another


def identity_of(stat: os.stat_result) -> Identity:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def stored_identity(path: Path) -> Identity:
    """The identity of the file at ``path`` now (a writer's, just after it renamed it there)."""
    return identity_of(os.stat(path))


def content_digest(path: Path, identity: Identity) -> str | None:
    """The SHA-256 of the file at ``path`` when it is the file of ``identity`` from before the
    hash to after it (``None`` otherwise, or when there is none)."""
    try:
        with path.open("rb") as handle:
            if identity_of(os.fstat(handle.fileno())) != identity:
                return None
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            if identity_of(os.fstat(handle.fileno())) != identity:
                return None
    except OSError:
        return None
    return digest


@dataclass(frozen=True)
class Span:
    """Where a mailbox's row is (``line`` its text) or would go (``start == end``, no line)."""

    start: int
    end: int
    line: str | None


class Snapshot:
    """The list file as opened now: ``identity``, ``size``, and its bytes, read where they are
    (``pread``: a search reads a few lines, and nothing stays mapped into the process).
    ``start`` is where the rows begin (set once the file is known, from its checked scan)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        stat = os.fstat(fd)
        self.identity = identity_of(stat)
        self.size = stat.st_size
        self.start = 0
        self._spans: dict[str, Span] = {}  # what locate found: a change reads a row again

    @classmethod
    def open(cls, path: Path) -> Snapshot | None:
        """The file at ``path``, ``None`` when there is none."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return cls(path, fd)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- reading rows --------------------------------------------------------------------------

    def raw_line(self, start: int) -> bytes:
        """The line starting at ``start``, with its line end."""
        size = 512
        while True:
            chunk = os.pread(self.fd, size, start)
            end = chunk.find(b"\n")
            if end >= 0:
                return chunk[: end + 1]
            if start + len(chunk) >= self.size:
                return chunk
            size *= 8

    def line_at(self, start: int) -> str:
        """The row starting at ``start``, without its line end."""
        return self.raw_line(start).decode("utf-8").rstrip("\r\n")

    def email_at(self, start: int) -> str:
        """The address of the row starting at ``start`` (the text before the first comma)."""
        raw = self.raw_line(start)
        return raw[: raw.find(b",")].decode("utf-8")

    def rows(self, start: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(offset, line bytes with its line end) of every line from ``start`` (the first
        row by default) to the end, blank lines included, read through a buffer."""
        position = self.start if start is None else start
        with os.fdopen(os.dup(self.fd), "rb", buffering=1 << 16) as handle:
            handle.seek(position)
            for raw in handle:
                yield position, raw
                position += len(raw)

    def locate(self, key: str) -> Span:
        """The row of mailbox key ``key``, or where it would be inserted (binary search over
        the sorted rows, then a short walk; kept for the next call)."""
        span = self._spans.get(key)
        if span is None:
            span = self._spans[key] = self._search(key)
        return span

    def _search(self, key: str) -> Span:
        low, high = self.start, self.size  # rows before low sort before key; high is a row start
        while high - low > WINDOW:
            middle = self._row_start(low + (high - low) // 2)
            row_key, raw = None, b""
            while middle < high and row_key is None:  # a blank line: the next row decides
                raw = self.raw_line(middle)
                row_key = _key(raw)
                if row_key is None:
                    middle += len(raw)
            if row_key is None:
                break
            if row_key < key:
                low = middle + len(raw)
            elif row_key == key:
                return Span(middle, middle + len(raw), raw.decode("utf-8").rstrip("\r\n"))
            else:
                high = middle
        rows = (
            self.rows(low)
            if high - low > 4 * WINDOW
            else _lines(os.pread(self.fd, high - low, low), low)
        )
        for start, raw in rows:
            if start >= high:
                break
            row_key = _key(raw)
            if row_key is None:
                continue
            if row_key == key:
                return Span(start, start + len(raw), raw.decode("utf-8").rstrip("\r\n"))
            if row_key > key:
                return Span(start, start, None)
        return Span(high, high, None)

    def _row_start(self, position: int) -> int:
        """The first line start at or after ``position``."""
        position -= 1
        while position < self.size:
            chunk = os.pread(self.fd, 4096, position)
            found = chunk.find(b"\n")
            if found >= 0:
                return position + found + 1
            if not chunk:
                break
            position += len(chunk)
        return self.size


def _lines(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line with its line end) of each line of ``data``, read from ``offset``."""
    position = 0
    while position < len(data):
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end + 1
        yield offset + position, data[position:end]
        position = end


def _key(raw: bytes) -> str | None:
    """The mailbox key of a row (the text before its first comma); ``None`` for a blank line."""
    comma = raw.find(b",")
    if comma < 0:
        return None
    return mailbox_key(raw[:comma].decode("utf-8"))


@dataclass(frozen=True)
class Splice:
    """One changed place of the file: the old bytes ``[start, end)`` (``start == end``: a row
    inserted there) replaced by ``line`` (``None``: the row removed)."""

    start: int
    end: int
    line: str | None


def write_spliced(snapshot: Snapshot, splices: Sequence[Splice], fd: int) -> None:
    """Write to ``fd`` the file ``snapshot`` holds with ``splices`` (in file order, not
    overlapping) applied: the bytes between them are copied, never read into memory."""
    position = 0
    for splice in splices:
        _copy(snapshot.fd, fd, position, splice.start)
        if splice.line is not None:
            _write_all(fd, (splice.line + "\n").encode("utf-8"))
        position = splice.end
    _copy(snapshot.fd, fd, position, snapshot.size)


def _copy(source: int, target: int, start: int, end: int) -> None:
    """Copy ``source``'s bytes ``[start, end)`` to ``target`` at its current position."""
    position = start
    if hasattr(os, "copy_file_range"):
        try:
            while position < end:
                copied = os.copy_file_range(source, target, end - position, position)
                if copied == 0:
                    break
                position += copied
        except OSError:
            pass  # not between these files (another file system, an old kernel): copy below
    while position < end:
        chunk = os.pread(source, min(1 << 20, end - position), position)
        if not chunk:
            break
        _write_all(target, chunk)
        position += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
