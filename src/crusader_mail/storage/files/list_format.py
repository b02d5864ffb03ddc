"""The files store's list file: ``subscribers_dir/subscribers.csv``, read and checked.

::

    # crusader-mail subscribers v1
    email,name,status,subscribed_at,subscribed_via,confirmed_at,confirmed_via,left_at,left_via,ref,updated_at
    jane@example.com,Jane Doe,active,2026-11-23T09:00:00Z,cli,2026-11-23T09:00:00Z,cli,,,,2026-11-23T09:00:00Z

- line 1 names the format and its version; line 2 is the CSV header, exactly these columns;
- one reader per line (a row of :mod:`crusader_mail.storage.rows`), sorted by address (plain
  code-point order, as ``LC_ALL=C sort``), so a change is a one-line diff in git; UTF-8, ``\\n``
  line ends (``\\r\\n`` and a BOM are accepted);
- ``email`` is in normal form (:func:`~crusader_mail.storage.rules.normalize_email`): never
  quoted, never twice.

:func:`scan` streams and checks a list file row by row in constant memory. Anything wrong
raises :class:`StateError` naming the file and the line (addresses masked); the caller never
overwrites a file that did not scan.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import chain
from pathlib import Path

from crusader_mail.errors import StateError
from crusader_mail.models import Status
from crusader_mail.storage.rows import COLUMNS, HEADER, SOURCES, STATUSES
from crusader_mail.storage.rules import normal_or_none
from crusader_mail.util.masking import mask_email

__all__ = ["COLUMNS", "HEADER", "MARKER", "file_head", "render", "row_email", "scan"]

FORMAT_VERSION = 1
MARKER_PREFIX = "# crusader-mail subscribers v"
MARKER = f"{MARKER_PREFIX}{FORMAT_VERSION}"
_TIME_COLUMNS = (3, 5, 7, 10)
_VIA_COLUMNS = (4, 6, 8)

# --- addresses --------------------------------------------------------------------------------

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ASCII_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*\Z")


class AddressCheck:
    """Is a stored address in normal form? Plain ASCII local parts take a fast path that asks
    email-validator once per domain; anything else is validated whole."""

    def __init__(self) -> None:
        self._domains: dict[str, bool] = {}

    def is_normal(self, address: str) -> bool:
        local, at, domain = address.rpartition("@")
        if (
            at
            and address.isascii()
            and len(local) <= 64
            and len(address) <= 254
            and _ASCII_LOCAL.match(local)
        ):
            known = self._domains.get(domain)
            if known is None:
                known = normal_or_none(f"a@{domain}") == f"a@{domain}"
                if len(self._domains) < 100_000:
                    self._domains[domain] = known
            return known
        return normal_or_none(address) == address


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


# --- reading ----------------------------------------------------------------------------------

Row = tuple[int, str, list[str], Status]  # line number, line text, fields, status


def scan(path: Path, *, ordered: bool = True) -> Iterator[Row]:
    """Stream the rows of a list file, each checked; nothing when the file does not exist.

    With ``ordered`` (the default) a row out of order or seen twice is an error; without it the
    caller sorts and checks for duplicates itself (``edit`` tidies a hand-edited file).
    """
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        return
    with handle:
        line_no = 0
        try:
            line_no = 1
            _check_marker(path, handle.readline())
            line_no = 2
            header = handle.readline().rstrip("\r\n")
            if header != HEADER:
                raise StateError(
                    f"{path}, line 2: the header is {header[:200]!r}, expected {HEADER!r}"
                )
            check = AddressCheck()
            previous, previous_no = "", 0
            for raw in handle:
                line_no += 1
                line = raw.rstrip("\r\n")
                if not line:
                    continue
                fields = line.split(",") if '"' not in line else _split_quoted(line, path, line_no)
                status = _check_fields(fields, path, line_no, check)
                email = fields[0]
                if ordered:
                    if email <= previous:
                        raise StateError(
                            _order_problem(path, line_no, email, previous, previous_no)
                        )
                    previous, previous_no = email, line_no
                yield line_no, line, fields, status
        except UnicodeDecodeError:
            raise StateError(f"{path}, line {line_no}: not UTF-8 text") from None


def _check_marker(path: Path, first: str) -> None:
    first = first.rstrip("\r\n")
    if not first.startswith(MARKER_PREFIX):
        shown = repr(first[:80]) if first else "an empty line"
        raise StateError(
            f"{path}, line 1: not a crusader-mail subscriber list: found {shown}, expected {MARKER!r}"
        )
    version = first[len(MARKER_PREFIX) :].strip()
    if version != str(FORMAT_VERSION):
        raise StateError(
            f"{path}, line 1: format version {version!r} is not one this crusader-mail reads "
            f"(it reads v{FORMAT_VERSION})"
        )


def _split_quoted(line: str, path: Path, line_no: int) -> list[str]:
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as error:
        raise StateError(f"{path}, line {line_no}: broken CSV quoting ({error})") from None


def _check_fields(fields: list[str], path: Path, line_no: int, check: AddressCheck) -> Status:
    if len(fields) != len(COLUMNS):
        raise StateError(
            f"{path}, line {line_no}: {len(fields)} columns, expected {len(COLUMNS)} ({HEADER})"
        )
    status = STATUSES.get(fields[2])
    if status is None:
        raise StateError(
            f"{path}, line {line_no}: status {fields[2][:40]!r} is not one of "
            + ", ".join(STATUSES)
        )
    email = fields[0]
    if not check.is_normal(email):
        raise StateError(
            f"{path}, line {line_no}: {mask_email(email)} is not a valid address in normal form"
            f"{_normal_hint(email)}"
        )
    for index in _VIA_COLUMNS:
        if fields[index] and fields[index] not in SOURCES:
            raise StateError(
                f"{path}, line {line_no}: {COLUMNS[index]} {fields[index][:40]!r} is not one of "
                + ", ".join(SOURCES)
            )
    for index in _TIME_COLUMNS:
        if fields[index]:
            _check_time(fields[index], COLUMNS[index], path, line_no)
    return status


def _normal_hint(email: str) -> str:
    normal = normal_or_none(email)
    return f" (write it as {mask_email(normal)})" if normal else ""


def _check_time(text: str, column: str, path: Path, line_no: int) -> None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise StateError(
            f"{path}, line {line_no}: {column} {text[:40]!r} is not an ISO 8601 time"
        ) from None
    if value.tzinfo is None:
        raise StateError(
            f"{path}, line {line_no}: {column} {text!r} has no timezone (write UTC, ending in Z)"
        )


def _order_problem(path: Path, line_no: int, email: str, previous: str, previous_no: int) -> str:
    if email == previous:
        return f"{path}, line {line_no}: {mask_email(email)} is already on line {previous_no}"
    return (
        f"{path}, line {line_no}: {mask_email(email)} is out of order (rows are sorted by "
        f"address; `crusader-mail subscribers tidy` sorts them)"
    )
