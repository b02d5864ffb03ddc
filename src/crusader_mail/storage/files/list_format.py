"""The files store's list file: ``subscribers_dir/subscribers.csv``, read and checked.

::

    # crusader-mail subscribers v2
    email,name,status,subscribed_at,subscribed_via,confirmed_at,confirmed_via,left_at,left_via,ref,updated_at
    jane@example.com,Jane Doe,active,2026-11-23T09:00:00Z,cli,2026-11-23T09:00:00Z,cli,,,,2026-11-23T09:00:00Z

- line 1 names the format and its version; line 2 is the CSV header, exactly these columns;
- one reader per line (a row of :mod:`crusader_mail.storage.rows`), one row per mailbox,
  sorted by mailbox key (:func:`~crusader_mail.storage.rules.mailbox_key`, the address
  lowercased, in plain code-point order), so a change is a one-line diff in git; UTF-8,
  ``\\n`` line ends (``\\r\\n`` and a BOM are accepted);
- ``email`` is in normal form (:func:`~crusader_mail.storage.rules.normalize_email`), kept as
  the reader first gave it, never quoted.

Version 1 (before addresses were one reader per mailbox) sorted rows by the address itself and
could hold ``Carol@example.org`` and ``carol@example.org`` as two readers. It is still read as it
is; the first change of the list rewrites it as version 2, merging such rows into one reader
by :func:`~crusader_mail.storage.rules.merge_variants` (a reader who left in any spelling
stays left).

:func:`scan` streams and checks a list file row by row in constant memory. Anything wrong
raises :class:`StateError` naming the file and the line (addresses masked); the caller never
overwrites a file that did not scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import BinaryIO

from crusader_mail.errors import StateError
from crusader_mail.models import Status
from crusader_mail.storage.rows import (
    COLUMNS,
    HEADER,
    AddressCheck,
    RowProblem,
    check_fields,
    split_line,
)
from crusader_mail.storage.rules import mailbox_key
from crusader_mail.util.masking import mask_email

__all__ = ["COLUMNS", "HEADER", "MARKER", "ListScan", "file_head", "render", "row_email", "scan"]

FORMAT_VERSION = 2
READABLE = (1, 2)
MARKER_PREFIX = "# crusader-mail subscribers v"
MARKER = f"{MARKER_PREFIX}{FORMAT_VERSION}"


# --- writing ----------------------------------------------------------------------------------


def render(lines: Iterable[str]) -> bytes:
    """The whole file, encoded, from row lines already in order (one join, one encode)."""
    text = "\n".join(chain((MARKER, HEADER), lines)) + "\n"
    return text.encode("utf-8")


def file_head() -> str:
    """The first two lines of a list file (a streaming writer then writes ``row + "\\n"``
    for each row: the same bytes as :func:`render`)."""
    return f"{MARKER}\n{HEADER}\n"


def row_email(line: str) -> str:
    """The address of a row line (the first field, never quoted)."""
    return line[: line.index(",")]


def row_key(line: str) -> str:
    """The mailbox key of a row line: what the rows are sorted and told apart by."""
    return mailbox_key(line[: line.index(",")])


# --- reading ----------------------------------------------------------------------------------

Row = tuple[int, str, list[str], Status]  # line number, line text, fields, status
BOM = b"\xef\xbb\xbf"


def scan(path: Path, *, ordered: bool = True) -> ListScan:
    """Stream the rows of a list file, each checked; nothing when the file does not exist.

    With ``ordered`` (the default) a row out of order or seen twice is an error; without it the
    caller sorts and checks for duplicates itself (``edit`` tidies a hand-edited file)."""
    return ListScan(path, ordered=ordered)


class ListScan:
    """The rows of one list file as they stream (:func:`scan`), read as bytes so that each row's
    place is known: during the iteration ``offset`` is where the current row starts and ``end``
    where the next line starts. ``version`` is the file's format version once the iteration has
    begun (``None`` when there is no file), ``start`` where the first row starts; after a whole
    iteration ``clean`` says the file is exactly as :func:`render` writes it (no BOM, ``\\n``
    line ends only, no blank line, a line end after the last row), so its bytes can be copied
    around a changed row. ``handle`` reads an open file (from its start) instead of ``path``."""

    def __init__(self, path: Path, *, ordered: bool = True, handle: BinaryIO | None = None) -> None:
        self.path = path
        self.ordered = ordered
        self.handle = handle
        self.version: int | None = None
        self.start = 0
        self.offset = 0
        self.end = 0
        self.clean = True

    def __iter__(self) -> Iterator[Row]:
        path = self.path
        if self.handle is not None:
            handle = self.handle
            handle.seek(0)
        else:
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                return
        with handle:
            yield from self._rows(handle)

    def _rows(self, handle: BinaryIO) -> Iterator[Row]:
        path = self.path
        line_no = 1
        try:
            first = handle.readline()
            if first.startswith(BOM):
                self.clean = False
            self.version = check_marker(path, first.removeprefix(BOM).decode("utf-8"))
            line_no = 2
            second = handle.readline()
            header = second.decode("utf-8").rstrip("\r\n")
            if header != HEADER:
                raise StateError(
                    f"{path}, line 2: the header is {header[:200]!r}, expected {HEADER!r}"
                )
            if first != f"{MARKER}\n".encode() or second != f"{HEADER}\n".encode():
                self.clean = False
            self.start = self.end = len(first) + len(second)
            sort_key = mailbox_key if self.version >= 2 else _same
            check = AddressCheck()
            previous, previous_email, previous_no = "", "", 0
            for raw in handle:
                line_no += 1
                self.offset = self.end
                self.end += len(raw)
                if raw[-1:] != b"\n" or b"\r" in raw or len(raw) == 1:
                    self.clean = False  # "\r\n", a blank line, or no line end after the last row
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    continue
                try:
                    fields = line.split(",") if '"' not in line else split_line(line)
                    status = check_fields(fields, check)
                except RowProblem as problem:
                    raise StateError(f"{path}, line {line_no}: {problem}") from None
                email = fields[0]
                if self.ordered:
                    key = sort_key(email)
                    if key <= previous:
                        raise StateError(
                            order_problem(
                                path, line_no, email, previous_email, previous_no, self.version
                            )
                        )
                    previous, previous_email, previous_no = key, email, line_no
                yield line_no, line, fields, status
        except UnicodeDecodeError:
            raise StateError(f"{path}, line {line_no}: not UTF-8 text") from None


def _same(email: str) -> str:
    return email


def check_marker(path: Path, first: str) -> int:
    """The format version the first line of a list file names (:class:`StateError` if none)."""
    first = first.rstrip("\r\n")
    if not first.startswith(MARKER_PREFIX):
        shown = repr(first[:80]) if first else "an empty line"
        raise StateError(
            f"{path}, line 1: not a crusader-mail subscriber list: found {shown}, expected {MARKER!r}"
        )
    version = first[len(MARKER_PREFIX) :].strip()
    if version not in {str(known) for known in READABLE}:
        raise StateError(
            f"{path}, line 1: format version {version!r} is not one this crusader-mail reads "
            f"(it reads v{READABLE[0]} to v{READABLE[-1]})"
        )
    return int(version)


def order_problem(
    path: Path, line_no: int, email: str, previous: str, previous_no: int, version: int = 2
) -> str:
    """Why a row cannot follow ``previous`` in a file of ``version``."""
    if email == previous:
        return f"{path}, line {line_no}: {mask_email(email)} is already on line {previous_no}"
    if version >= 2 and mailbox_key(email) == mailbox_key(previous):
        return (
            f"{path}, line {line_no}: {mask_email(email)} is the reader of line {previous_no} "
            "(the addresses differ only in case): keep one row"
        )
    return (
        f"{path}, line {line_no}: {mask_email(email)} is out of order (rows are sorted by "
        f"address; `crusader-mail subscribers tidy` sorts them)"
    )
